//! Names cut to AWS's length limits, kept unique by a hash of the full name.

use sha2::{Digest, Sha256};

/// `full` cut to `max`, ended with `-` and 8 hex characters of its hash when too long.
pub fn cut_name(full: &str, max: usize) -> String {
    if full.len() <= max {
        return full.to_string();
    }
    let hash = hex::encode(Sha256::digest(full.as_bytes()));
    format!("{}-{}", &full[..max - 9], &hash[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_names_are_cut_with_a_hash() {
        assert_eq!(cut_name("team-reader", 128), "team-reader");
        let long = format!("team-{}", "n".repeat(70));
        let got = cut_name(&long, 64);
        assert_eq!(got.len(), 64);
        assert!(got.starts_with("team-nnnn"));
        assert_eq!(&got[55..56], "-");
        assert_ne!(got, cut_name(&format!("{long}x"), 64));
    }
}
