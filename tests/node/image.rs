//! The image hack/image.sh built from the Dockerfile: small, one static binary and the
//! CA bundle, a non-root user, the operator as entrypoint.

use std::path::Path;
use std::process::Command;

fn tar_extract(archive: &Path, into: &Path) {
    let ok = Command::new("tar")
        .arg("-xf")
        .arg(archive)
        .arg("-C")
        .arg(into)
        .status()
        .expect("tar")
        .success();
    assert!(ok, "cannot unpack {}", archive.display());
}

fn blob(dir: &Path, digest: &str) -> std::path::PathBuf {
    dir.join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Largest image size (compressed layers) we accept; it is about 15 MB today.
const MAX_IMAGE_BYTES: u64 = 40 * 1024 * 1024;

#[test]
fn the_image_is_small_static_and_runs_as_non_root() {
    let archive = std::env::var("IAMWRIGHT_IMAGE_ARCHIVE")
        .expect("IAMWRIGHT_IMAGE_ARCHIVE (hack/test.sh sets it from hack/image.sh)");
    let dir = tempfile::tempdir().unwrap();
    tar_extract(Path::new(&archive), dir.path());
    let index = json(&dir.path().join("index.json"));
    let manifest = json(&blob(
        dir.path(),
        index["manifests"][0]["digest"].as_str().unwrap(),
    ));
    let config = json(&blob(
        dir.path(),
        manifest["config"]["digest"].as_str().unwrap(),
    ));
    let c = &config["config"];
    assert_eq!(c["User"], "65532:65532", "{c}");
    assert_eq!(c["Entrypoint"], serde_json::json!(["/iamwright"]), "{c}");
    assert_eq!(c["Cmd"], serde_json::json!(["run"]), "{c}");

    let layers = manifest["layers"].as_array().unwrap();
    let size: u64 = layers.iter().map(|l| l["size"].as_u64().unwrap()).sum();
    eprintln!("figure: image {size} bytes in {} layer(s)", layers.len());
    assert!(size <= MAX_IMAGE_BYTES, "image is {size} bytes");

    // Exactly the binary and the CA bundle: no shell, no package manager.
    let mut files = Vec::new();
    for l in layers {
        let out = Command::new("tar")
            .arg("-tvf")
            .arg(blob(dir.path(), l["digest"].as_str().unwrap()))
            .output()
            .unwrap();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if !line.starts_with('d') {
                files.push(
                    line.rsplit(' ')
                        .next()
                        .unwrap()
                        .trim_start_matches("./")
                        .to_string(),
                );
            }
        }
    }
    files.sort();
    assert_eq!(
        files,
        ["etc/ssl/certs/ca-certificates.crt", "iamwright"],
        "unexpected files in the image"
    );

    // The binary is static: it has no program interpreter (it runs from scratch).
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    for l in layers {
        let ok = Command::new("tar")
            .arg("-xf")
            .arg(blob(dir.path(), l["digest"].as_str().unwrap()))
            .arg("-C")
            .arg(&bin)
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }
    let elf = std::fs::read(bin.join("iamwright")).unwrap();
    assert_eq!(&elf[..4], b"\x7fELF");
    assert!(
        !elf.windows(16).any(|w| w == b"/lib64/ld-linux-"),
        "the binary names a dynamic loader"
    );
}
