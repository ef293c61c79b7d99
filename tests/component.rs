//! The built component's boundary: what it exports and imports.

use chatstore_host::STORAGE_COMPONENT;
use wasmparser::{Parser, Payload};

/// The names the outermost component imports and exports.
fn boundary(bytes: &[u8]) -> (Vec<String>, Vec<String>) {
    let (mut imports, mut exports) = (Vec::new(), Vec::new());
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.expect("a valid component") {
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(section) if depth == 0 => {
                for import in section {
                    imports.push(import.expect("import").name.name.to_owned());
                }
            }
            Payload::ComponentExportSection(section) if depth == 0 => {
                for export in section {
                    exports.push(export.expect("export").name.name.to_owned());
                }
            }
            _ => {}
        }
    }
    (imports, exports)
}

#[test]
fn the_component_exports_the_storage_interface() {
    let (_, exports) = boundary(STORAGE_COMPONENT);
    assert_eq!(exports, vec!["chatstore:storage/storage@0.5.0".to_owned()]);
}

#[test]
fn the_component_imports_the_seven_ports() {
    let (imports, _) = boundary(STORAGE_COMPONENT);
    for port in [
        "workspace-repository",
        "chat-repository",
        "chat-file-repository",
        "sandbox-session-repository",
        "chat-storage",
        "storage-usage",
        "id-generator",
    ] {
        let name = format!("chatstore:storage/{port}@0.5.0");
        assert!(imports.contains(&name), "{name} missing from {imports:#?}");
    }
}

#[test]
fn the_component_imports_no_filesystem_and_no_sockets() {
    let (imports, _) = boundary(STORAGE_COMPONENT);
    assert!(!imports.is_empty());
    let forbidden: Vec<_> = imports
        .iter()
        .filter(|name| name.starts_with("wasi:filesystem/") || name.starts_with("wasi:sockets/"))
        .collect();
    assert!(
        forbidden.is_empty(),
        "the guest must not touch the filesystem: {forbidden:?}"
    );
}

#[test]
fn every_import_is_a_port_or_a_wasi_interface_of_the_standard_library() {
    let (imports, _) = boundary(STORAGE_COMPONENT);
    for name in &imports {
        assert!(
            name.starts_with("chatstore:storage/")
                || name.starts_with("wasi:cli/")
                || name.starts_with("wasi:io/")
                || name.starts_with("wasi:clocks/")
                || name.starts_with("wasi:random/"),
            "unexpected import {name}"
        );
    }
}
