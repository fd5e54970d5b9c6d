//! A real big-endian dump, made by crust on s390x (`static_tiny` in a qemu-system VM,
//! `cargo xtest qemu export s390x static_tiny images/tests/fixtures/s390x-dump`), read on
//! whatever host runs the tests: the byte order comes from the magic, every image
//! decodes to the snapshotted crit JSON and encodes back byte for byte, and the parts
//! that belong together (pagemap and pages, core and mm) agree.

use std::path::{Path, PathBuf};

use crust_images::json::{image_to_json, json_to_image, to_crit_string, JsonOptions};
use crust_images::{pb, ByteOrder, ImageReader, PagemapReader};

fn dump_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/s390x-dump")
}

/// Every `*.img` of the dump, by name.
fn images() -> Vec<(String, Vec<u8>)> {
    let mut images: Vec<(String, Vec<u8>)> = std::fs::read_dir(dump_dir())
        .expect("tests/fixtures/s390x-dump")
        .map(|entry| entry.expect("list the dump").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "img"))
        .map(|path| {
            let name = path.file_name().expect("a name").to_string_lossy().into_owned();
            (name, std::fs::read(&path).expect("read image"))
        })
        .collect();
    images.sort();
    assert!(images.len() >= 8, "the dump is all there: {:?}", images.iter().map(|(n, _)| n).collect::<Vec<_>>());
    images
}

/// The one `PREFIX-ID.img` of the dump.
fn the_image(prefix: &str) -> (String, u64) {
    let (name, _) = images()
        .into_iter()
        .find(|(name, _)| name.starts_with(prefix) && name[prefix.len()..].starts_with('-'))
        .unwrap_or_else(|| panic!("no {prefix}-*.img"));
    let id = name[prefix.len() + 1..name.len() - 4].parse().expect("numeric id");
    (name, id)
}

fn read_single<M: prost::Message + Default>(path: &Path) -> M {
    let mut reader = ImageReader::open(path).expect("open");
    assert_eq!(reader.byte_order(), ByteOrder::Big, "{}", path.display());
    reader.next_entry().expect("decode").expect("one entry")
}

#[test]
fn byte_order_comes_from_the_magic() {
    for (name, bytes) in images() {
        if name.starts_with("pages-") {
            continue; // raw page contents, no header
        }
        let reader = ImageReader::from_bytes(name.clone(), bytes).expect("header");
        assert_eq!(reader.byte_order(), ByteOrder::Big, "{name}");
    }
}

#[test]
fn images_decode_to_snapshotted_json_and_back() {
    for (name, bytes) in images() {
        if name.starts_with("pages-") {
            continue;
        }
        let options = JsonOptions { pretty: true, no_payload: false };
        let json = image_to_json(&name, &bytes, &options).unwrap_or_else(|e| panic!("{name}: {e}"));
        let text = to_crit_string(&json, true);
        // Image names carry the VM's pid; snapshots are named by kind.
        let kind = name.split(['-', '.']).next().expect("a kind");
        insta::assert_snapshot!(format!("s390x_dump__{kind}"), text);
        let reparsed: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
        let encoded = json_to_image(&reparsed, ByteOrder::Big).expect("encodes");
        assert!(encoded == bytes, "{name} does not round trip");
    }
}

#[test]
fn core_is_an_s390x_thread_with_its_registers() {
    let (name, _) = the_image("core");
    let core: pb::CoreEntry = read_single(&dump_dir().join(name));
    assert_eq!(core.mtype, pb::core_entry::March::S390 as i32);
    let info = core.ti_s390.expect("thread_info_s390");
    let regs = info.gpregs;
    // A 64-bit user task: EA and BA set in the mask, the address in user space.
    assert_eq!(regs.psw_mask & 0x0000_0001_8000_0000, 0x0000_0001_8000_0000, "psw mask {:#x}", regs.psw_mask);
    assert!(regs.psw_addr != 0 && regs.psw_addr < 1 << 42, "psw addr {:#x}", regs.psw_addr);
    assert_eq!(regs.gprs.len(), 16);
    assert_eq!(info.fpregs.fprs.len(), 16);
}

#[test]
fn pagemap_fits_the_pages_file_and_the_areas() {
    let (_, id) = the_image("pagemap");
    let pagemap = PagemapReader::open(&dump_dir(), id, 4096).expect("pagemap agrees with pages");
    let (mm_name, _) = the_image("mm");
    let mm: pb::MmEntry = read_single(&dump_dir().join(mm_name));
    assert!(!mm.vmas.is_empty());
    for run in pagemap.runs() {
        let inside = mm.vmas.iter().any(|vma| vma.start <= run.vaddr && run.vaddr < vma.end);
        assert!(inside, "pages at {:#x} lie in no area", run.vaddr);
    }
}
