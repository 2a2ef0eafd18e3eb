//! The manifest files a command-line check reads (`iamwright validate`, `iamwright
//! policy --from`).

use std::path::PathBuf;

/// Every YAML/JSON file under `paths` (directories recursively, sorted); `-` is the
/// standard input (e.g. `kustomize build . | iamwright validate -f -`).
pub fn collect_files(paths: &[PathBuf]) -> std::io::Result<Vec<PathBuf>> {
    let mut files = vec![];
    for p in paths {
        if p.as_os_str() == "-" {
            files.push(p.clone());
        } else if p.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(p)?
                .map(|e| e.map(|e| e.path()))
                .collect::<Result<_, _>>()?;
            entries.sort();
            for e in entries {
                if e.is_dir()
                    || matches!(
                        e.extension().and_then(|x| x.to_str()),
                        Some("yaml" | "yml" | "json")
                    )
                {
                    files.extend(collect_files(&[e])?);
                }
            }
        } else {
            files.push(p.clone());
        }
    }
    Ok(files)
}
