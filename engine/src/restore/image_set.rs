//! The check that every image of a dump is one this restore reads (or may leave
//! unread), and that the inventory asks for nothing it cannot do, so that a CRIU dump
//! holding state crust cannot restore yet (a user namespace, a tty's unread data, ...)
//! fails in one line naming the image, before anything is created, instead of coming back without it.

use std::path::Path;

use crust_images::{pb, ImageKind};

use crate::restore::images::ImagesError;

/// What this restore does with each kind of image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Handling {
    /// Read and restored.
    Restored,
    /// Left unread, and why that loses nothing.
    Unread(&'static str),
    /// Not restored: the dump is refused.
    Refused,
}

/// How this restore handles images of `kind`.
pub(crate) fn handling(kind: ImageKind) -> Handling {
    use ImageKind::*;
    match kind {
        Inventory | Pstree | Core | Ids | Mm | Pagemap | PagemapShmem | Pages | Fdinfo | Files | Fs | Seccomp | PipesData
        | FifoData | SkQueues | TcpStream | TtyInfo | MemfdInode | FileLocks | RemapFpath | GhostFile | IpcVar | IpcnsShm
        | IpcnsMsg | IpcnsSem | Netns | Netdev | Ifaddr | Route | Route6 | Rule | Iptables | Ip6tables | Nftables | Mnts
        | Utsns | Userns | Cgroup | TmpfsDev | TmpfsImg | Timens => Handling::Restored,
        StatsDump | StatsRestore => Handling::Unread("statistics of the dump or of a restore"),
        IrmapCache => Handling::Unread("a cache of the dumping tool"),
        
        _ => Handling::Refused,
    }
}

/// What inventory.img may say that this restore cannot honour: an image layout older
/// than CRIU's current one (`img_version` 2, fdinfo and namespace images named by id),
/// a dump that needs a CRIU plugin, one made with uprobes allowed, or a TCP lock it
/// cannot lift (an unknown `network_lock_method`, nftables without the run id that
/// names the table). Pure.
pub(crate) fn check_inventory(inventory: &pb::InventoryEntry) -> Result<(), ImagesError> {
    let refuse = |what: String| Err(ImagesError::BadImage { image: ImageKind::Inventory.file_name(0), what });
    if inventory.img_version != 2 {
        return refuse(format!("image version {} (img_version) is not supported; crust reads version 2", inventory.img_version));
    }
    if inventory.fdinfo_per_id != Some(true) || inventory.ns_per_id == Some(false) {
        return refuse("images named per task rather than per id (fdinfo_per_id, ns_per_id) are not supported".into());
    }
    if let Some(plugin) = inventory.plugins_entry.as_ref().and_then(|p| p.plugins.first()) {
        return refuse(format!("the dump needs CRIU's {plugin} plugin (plugins_entry), which crust does not have"));
    }
    if inventory.allow_uprobes == Some(true) {
        return refuse("a dump made with uprobes allowed (allow_uprobes) is not supported yet".into());
    }
    // How the TCP lock is lifted after the restore (files::restore::dump_lock).
    use crate::files::{NETWORK_LOCK_IPTABLES, NETWORK_LOCK_NFTABLES, NETWORK_LOCK_SKIP};
    match inventory.network_lock_method {
        None | Some(NETWORK_LOCK_IPTABLES) | Some(NETWORK_LOCK_SKIP) => {}
        Some(NETWORK_LOCK_NFTABLES) if inventory.dump_criu_run_id.is_some() => {}
        Some(NETWORK_LOCK_NFTABLES) => return refuse("network_lock_method nftables without dump_criu_run_id, which names the lock table".into()),
        Some(other) => return refuse(format!("network_lock_method {other} is not known (0 iptables, 1 nftables, 2 skip)")),
    }
    Ok(())
}

/// Checks every image in `dir` (files named as CRIU names images; anything else, like
/// logs, is left alone) and what the inventory asks for.
pub(crate) fn check(dir: &Path) -> Result<(), ImagesError> {
    let inventory_path = dir.join(ImageKind::Inventory.file_name(0));
    let inventory = crust_images::read_entries::<pb::InventoryEntry>(&inventory_path)
        .map_err(|source| ImagesError::Image { image: inventory_path.display().to_string(), source })?;
    match inventory.first() {
        Some(inventory) => check_inventory(inventory)?,
        None => return Err(ImagesError::BadImage { image: ImageKind::Inventory.file_name(0), what: "no entry".into() }),
    }
    let entries = std::fs::read_dir(dir).map_err(|source| ImagesError::Missing { pid: 0, what: format!("list {}", dir.display()), source })?;
    let mut names: Vec<String> = entries.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    for name in names {
        let Some((kind, _)) = ImageKind::from_file_name(&name) else { continue };
        match handling(kind) {
            Handling::Restored => {}
            Handling::Unread(why) => log::info!("{name} left unread: {why}"),
            Handling::Refused => {
                return Err(ImagesError::BadImage { image: name, what: format!("{} images are not supported yet", kind.name()) });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inventory() -> pb::InventoryEntry {
        pb::InventoryEntry { img_version: 2, fdinfo_per_id: Some(true), ns_per_id: Some(true), ..Default::default() }
    }

    #[test]
    fn what_the_inventory_asks_for_is_checked() {
        check_inventory(&inventory()).expect("CRIU 4.2's layout");
        let plugin = pb::InventoryEntry { plugins_entry: Some(pb::PluginsEntry { plugins: vec!["amdgpu".into()] }), ..inventory() };
        assert_eq!(
            check_inventory(&plugin).expect_err("plugin").to_string(),
            "restore: inventory.img: the dump needs CRIU's amdgpu plugin (plugins_entry), which crust does not have"
        );
        assert!(check_inventory(&pb::InventoryEntry { img_version: 1, ..inventory() }).is_err());
        assert!(check_inventory(&pb::InventoryEntry { fdinfo_per_id: None, ..inventory() }).is_err());
        for method in [0, 2] {
            check_inventory(&pb::InventoryEntry { network_lock_method: Some(method), ..inventory() }).expect("iptables, skip");
        }
        let nftables = pb::InventoryEntry { network_lock_method: Some(1), ..inventory() };
        assert!(check_inventory(&nftables).is_err(), "nftables names its table by the run id");
        check_inventory(&pb::InventoryEntry { dump_criu_run_id: Some("a6f832d8-fea2-41e3-91a2-c84fb3431983".into()), ..nftables }).expect("nftables");
        assert!(check_inventory(&pb::InventoryEntry { network_lock_method: Some(3), ..inventory() }).is_err());
    }

    #[test]
    fn images_crust_cannot_restore_are_refused_by_name() {
        let dir = std::env::temp_dir().join(format!("crust-image-set-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let mut writer = crust_images::ImageWriter::create(&dir, ImageKind::Inventory, 0).expect("inventory");
        writer.write_entry(&inventory()).expect("entry");
        writer.finish().expect("finish");
        for name in ["core-1.img", "stats-dump", "timens-0.img", "dump.log", "restore.pid"] {
            std::fs::write(dir.join(name), b"").expect("file");
        }
        check(&dir).expect("all read or harmless");
        for name in ["mountpoints-12.img", "utsns-11.img", "userns-13.img"] {
            std::fs::write(dir.join(name), b"").expect("file");
        }
        check(&dir).expect("mount, UTS and user namespaces are restored");
        std::fs::write(dir.join("binfmt-misc-14.img"), b"").expect("file");
        let error = check(&dir).expect_err("binfmt_misc").to_string();
        assert_eq!(error, "restore: binfmt-misc-14.img: BINFMT_MISC images are not supported yet");
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
