//! A set of record Ids in 16 bytes each: Salesforce Ids (15 or 18 characters of `[0-9A-Za-z]`)
//! are packed into a `u128` and kept in one sorted vector, so the Ids of a 10-million-record
//! object take 160 MB instead of about a gigabyte of `String`s (a hash set of `u128` would take
//! 300 MB and twice that while it grows); any other text is kept as is.

use std::collections::HashSet;

/// Record Ids: add them all, then [`IdSet::seal`] before asking.
#[derive(Debug, Default)]
pub struct IdSet {
    packed: Vec<u128>,
    sealed: bool,
    other: HashSet<String>,
}

/// The Id as a base-62 number with its length in the top byte (15- and 18-character forms of
/// one record stay distinct, as they are distinct strings).
fn pack(id: &str) -> Option<u128> {
    if !(id.len() == 15 || id.len() == 18) {
        return None;
    }
    let mut value: u128 = 0;
    for byte in id.bytes() {
        let digit = match byte {
            b'0'..=b'9' => byte - b'0',
            b'A'..=b'Z' => byte - b'A' + 10,
            b'a'..=b'z' => byte - b'a' + 36,
            _ => return None,
        };
        value = value * 62 + u128::from(digit);
    }
    // 62^18 < 2^108: the length fits above.
    Some(value | (id.len() as u128) << 120)
}

impl IdSet {
    /// A set with room for `capacity` Ids (no reallocation while they are added).
    pub fn with_capacity(capacity: usize) -> IdSet {
        IdSet {
            packed: Vec::with_capacity(capacity),
            ..IdSet::default()
        }
    }

    /// Adds an Id.
    pub fn insert(&mut self, id: &str) {
        self.sealed = false;
        match pack(id) {
            Some(packed) => self.packed.push(packed),
            None => {
                self.other.insert(id.to_string());
            }
        }
    }

    /// Sorts and deduplicates: the set can be asked from now on.
    pub fn seal(&mut self) {
        self.packed.sort_unstable();
        self.packed.dedup();
        self.sealed = true;
    }

    /// Whether the Id is in the set.
    pub fn contains(&self, id: &str) -> bool {
        debug_assert!(
            self.sealed || self.packed.is_empty(),
            "IdSet::seal before contains"
        );
        match pack(id) {
            Some(packed) => self.packed.binary_search(&packed).is_ok(),
            None => self.other.contains(id),
        }
    }

    /// Ids in the set.
    pub fn len(&self) -> usize {
        self.packed.len() + self.other.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<'a> Extend<&'a str> for IdSet {
    fn extend<I: IntoIterator<Item = &'a str>>(&mut self, ids: I) {
        for id in ids {
            self.insert(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn salesforce_ids_pack_and_other_text_is_kept() {
        let mut set = IdSet::default();
        set.extend([
            "001000000000001AAA",
            "001000000000001",
            "not an id",
            "zzzzzzzzzzzzzzzzzz",
        ]);
        set.insert("001000000000001AAA");
        set.seal();
        assert_eq!(set.len(), 4, "a repeated Id counts once");
        assert!(set.contains("001000000000001AAA"));
        assert!(
            set.contains("001000000000001"),
            "15 characters: its own key"
        );
        assert!(!set.contains("001000000000001AAB"));
        assert!(
            !set.contains("001000000000001aaa"),
            "Ids are case-sensitive"
        );
        assert!(set.contains("not an id"));
        assert!(
            set.contains("zzzzzzzzzzzzzzzzzz"),
            "the largest 18-character Id packs"
        );
    }

    proptest! {
        #[test]
        fn membership_matches_a_set_of_strings(
            ids in proptest::collection::vec("[0-9A-Za-z]{15}|[0-9A-Za-z]{18}|[a-z ]{0,5}", 0..50),
            probe in "[0-9A-Za-z]{15}|[0-9A-Za-z]{18}",
        ) {
            let mut set = IdSet::default();
            set.extend(ids.iter().map(String::as_str));
            set.seal();
            let strings: HashSet<&str> = ids.iter().map(String::as_str).collect();
            prop_assert_eq!(set.len(), strings.len());
            for id in &ids {
                prop_assert!(set.contains(id));
            }
            prop_assert_eq!(set.contains(&probe), strings.contains(probe.as_str()));
        }
    }
}
