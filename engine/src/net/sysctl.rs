//! The network sysctls of a namespace: `net.ipv4.conf.*` and `net.ipv6.conf.*` of
//! `all`, `default` and each device (`netns-N`'s `all_conf4`/`def_conf4`/...,
//! `netdev-N`'s `conf4`/`conf6`), `net.unix.max_dgram_qlen` and
//! `net.ipv4.ping_group_range`. The images keep values only: the name is the position in
//! CRIU's lists below, which are part of the format.
//!
//! Read and written through /proc/sys/net, which shows the namespace of the thread that
//! opens the file: the callers run in a thread that entered the namespace.
//!
//! Restore follows CRIU's rules: `all` first, then `default`, then each device; a value
//! equal to the namespace's default is not written (but `mtu`); `accept_redirects`
//! after the rest (it depends on `forwarding`); an entry without a value is skipped, and
//! so is a sysctl this kernel lacks (logged).

use std::fs;
use std::io;

use crust_images::pb;

use super::NetError;

/// `net.ipv4.conf.DEV.*`, in CRIU's order.
pub(crate) const CONF4: [&str; 30] = [
    "accept_local",
    "accept_redirects",
    "accept_source_route",
    "arp_accept",
    "arp_announce",
    "arp_filter",
    "arp_ignore",
    "arp_notify",
    "bootp_relay",
    "disable_policy",
    "disable_xfrm",
    "force_igmp_version",
    "forwarding",
    "igmpv2_unsolicited_report_interval",
    "igmpv3_unsolicited_report_interval",
    "log_martians",
    "medium_id",
    "promote_secondaries",
    "proxy_arp",
    "proxy_arp_pvlan",
    "route_localnet",
    "rp_filter",
    "secure_redirects",
    "send_redirects",
    "shared_media",
    "src_valid_mark",
    "tag",
    "ignore_routes_with_linkdown",
    "drop_gratuitous_arp",
    "drop_unicast_in_l2_multicast",
];

/// `net.ipv6.conf.DEV.*`, in CRIU's order.
pub(crate) const CONF6: [&str; 42] = [
    "accept_dad",
    "accept_ra",
    "accept_ra_defrtr",
    "accept_ra_from_local",
    "accept_ra_min_hop_limit",
    "accept_ra_mtu",
    "accept_ra_pinfo",
    "accept_ra_rt_info_max_plen",
    "accept_ra_rtr_pref",
    "accept_redirects",
    "accept_source_route",
    "autoconf",
    "dad_transmits",
    "disable_ipv6",
    "drop_unicast_in_l2_multicast",
    "drop_unsolicited_na",
    "force_mld_version",
    "force_tllao",
    "forwarding",
    "hop_limit",
    "ignore_routes_with_linkdown",
    "keep_addr_on_down",
    "max_addresses",
    "max_desync_factor",
    "mldv1_unsolicited_report_interval",
    "mldv2_unsolicited_report_interval",
    "mtu",
    "ndisc_notify",
    "optimistic_dad",
    "proxy_ndp",
    "regen_max_retry",
    "router_probe_interval",
    "router_solicitation_delay",
    "router_solicitation_interval",
    "router_solicitations",
    "stable_secret",
    "suppress_frag_ndisc",
    "temp_prefered_lft",
    "temp_valid_lft",
    "use_oif_addrs_only",
    "use_optimistic",
    "use_tempaddr",
];

/// The one string sysctl of `CONF6`.
const STRING_CONF6: &str = "stable_secret";

/// Which protocol's conf directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Family {
    V4,
    V6,
}

impl Family {
    fn names(self) -> &'static [&'static str] {
        match self {
            Family::V4 => &CONF4,
            Family::V6 => &CONF6,
        }
    }

    fn dir(self) -> &'static str {
        match self {
            Family::V4 => "/proc/sys/net/ipv4/conf",
            Family::V6 => "/proc/sys/net/ipv6/conf",
        }
    }
}

/// Reads the conf sysctls of `device` (`all`, `default` or a link's name).
pub(crate) fn read_conf(family: Family, device: &str) -> Vec<pb::SysctlEntry> {
    family
        .names()
        .iter()
        .map(|name| {
            let path = format!("{}/{device}/{name}", family.dir());
            let text = fs::read_to_string(&path).ok();
            if *name == STRING_CONF6 {
                // EIO while unset: an entry without a value, as CRIU writes it.
                pb::SysctlEntry { r#type: pb::SysctlType::CtlStr as i32, iarg: None, sarg: text.map(|t| t.trim_end().to_string()) }
            } else {
                pb::SysctlEntry { r#type: pb::SysctlType::Ctl32 as i32, iarg: text.and_then(|t| t.trim().parse().ok()), sarg: None }
            }
        })
        .collect()
}

/// The sysctls of a namespace as a whole.
pub(crate) fn read_namespace() -> pb::NetnsEntry {
    pb::NetnsEntry {
        def_conf4: read_conf(Family::V4, "default"),
        all_conf4: read_conf(Family::V4, "all"),
        def_conf6: read_conf(Family::V6, "default"),
        all_conf6: read_conf(Family::V6, "all"),
        unix_conf: vec![pb::SysctlEntry {
            r#type: pb::SysctlType::Ctl32 as i32,
            iarg: fs::read_to_string("/proc/sys/net/unix/max_dgram_qlen").ok().and_then(|t| t.trim().parse().ok()),
            sarg: None,
        }],
        ipv4_sysctl: vec![pb::SysctlEntry {
            r#type: pb::SysctlType::CtlStr as i32,
            iarg: None,
            sarg: fs::read_to_string("/proc/sys/net/ipv4/ping_group_range").ok().map(|t| t.trim_end().to_string()),
        }],
        ..Default::default()
    }
}

/// The writes that restore `values` given the namespace's defaults `defaults`, in
/// order: (name, value). Pure.
pub(crate) fn plan_writes(family: Family, values: &[pb::SysctlEntry], defaults: &[pb::SysctlEntry]) -> Vec<(&'static str, String)> {
    let mut writes = Vec::new();
    let mut last = Vec::new();
    for (index, (name, entry)) in family.names().iter().zip(values).enumerate() {
        let value = match (entry.iarg, &entry.sarg) {
            (Some(number), _) => number.to_string(),
            (None, Some(text)) => text.clone(),
            (None, None) => continue,
        };
        let default = defaults.get(index);
        let same_as_default = default.is_some_and(|d| d.iarg == entry.iarg && d.sarg == entry.sarg);
        if same_as_default && *name != "mtu" {
            continue;
        }
        if *name == "accept_redirects" {
            last.push((*name, value));
        } else {
            writes.push((*name, value));
        }
    }
    writes.extend(last);
    writes
}

/// Writes the conf sysctls of `device`.
pub(crate) fn write_conf(family: Family, device: &str, values: &[pb::SysctlEntry], defaults: &[pb::SysctlEntry]) -> Result<(), NetError> {
    for (name, value) in plan_writes(family, values, defaults) {
        write_one(&format!("{}/{device}/{name}", family.dir()), &value)?;
    }
    Ok(())
}

/// Writes the sysctls of a namespace as a whole (`all` before `default`).
pub(crate) fn write_namespace(entry: &pb::NetnsEntry) -> Result<(), NetError> {
    // `all` is compared with the defaults of a new namespace, which the image does not
    // hold: read them here.
    let fresh4 = read_conf(Family::V4, "default");
    let fresh6 = read_conf(Family::V6, "default");
    write_conf(Family::V4, "all", &entry.all_conf4, &fresh4)?;
    write_conf(Family::V4, "default", &entry.def_conf4, &fresh4)?;
    if !entry.def_conf6.is_empty() || !entry.all_conf6.is_empty() {
        write_conf(Family::V6, "all", &entry.all_conf6, &fresh6)?;
        write_conf(Family::V6, "default", &entry.def_conf6, &fresh6)?;
    }
    if let Some(qlen) = entry.unix_conf.first().and_then(|e| e.iarg) {
        write_one("/proc/sys/net/unix/max_dgram_qlen", &qlen.to_string())?;
    }
    if let Some(range) = entry.ipv4_sysctl.first().and_then(|e| e.sarg.as_ref()) {
        write_one("/proc/sys/net/ipv4/ping_group_range", range)?;
    }
    Ok(())
}

fn write_one(path: &str, value: &str) -> Result<(), NetError> {
    match fs::write(path, value) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            log::warn!("{path}: not on this kernel, {value} not restored");
            Ok(())
        }
        Err(error) => Err(NetError::io(format!("write {value:?} to {path}"), error)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(v: i32) -> pb::SysctlEntry {
        pb::SysctlEntry { r#type: pb::SysctlType::Ctl32 as i32, iarg: Some(v), sarg: None }
    }

    #[test]
    fn writes_skip_defaults_but_mtu_and_put_accept_redirects_last() {
        let defaults: Vec<_> = CONF6.iter().map(|_| value(1)).collect();
        let mut values = defaults.clone();
        values[9] = value(0); // accept_redirects
        values[18] = value(1); // forwarding, equal: skipped
        values[19] = value(33); // hop_limit
        values[35] = pb::SysctlEntry { r#type: pb::SysctlType::CtlStr as i32, iarg: None, sarg: None }; // stable_secret unset
        let writes = plan_writes(Family::V6, &values, &defaults);
        assert_eq!(writes, vec![("hop_limit", "33".to_string()), ("mtu", "1".to_string()), ("accept_redirects", "0".to_string())]);
    }

    #[test]
    fn the_lists_are_criu_s_lengths() {
        assert_eq!((CONF4.len(), CONF6.len()), (30, 42));
    }
}
