//! A small least-recently-used cache of label embeddings, so repeated label sets skip the text
//! tower. Keyed by (template set, label); the value is the ensembled, L2-normalized embedding.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::sync::Mutex;

/// A thread-safe LRU map. Lookups and inserts are O(log n); recency is a global tick.
pub struct Lru<K, V> {
    inner: Mutex<Inner<K, V>>,
}

struct Inner<K, V> {
    capacity: usize,
    tick: u64,
    map: HashMap<K, (V, u64)>,
    by_age: BTreeMap<u64, K>,
}

impl<K: Hash + Eq + Clone, V: Clone> Lru<K, V> {
    /// A cache holding at most `capacity` entries (0 disables caching).
    pub fn new(capacity: usize) -> Self {
        Lru {
            inner: Mutex::new(Inner {
                capacity,
                tick: 0,
                map: HashMap::new(),
                by_age: BTreeMap::new(),
            }),
        }
    }

    /// The value for `key`, marking it most recently used.
    pub fn get(&self, key: &K) -> Option<V> {
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let inner = &mut *guard;
        inner.tick += 1;
        let tick = inner.tick;
        let (value, age) = inner.map.get_mut(key)?;
        let old = std::mem::replace(age, tick);
        let value = value.clone();
        inner.by_age.remove(&old);
        inner.by_age.insert(tick, key.clone());
        Some(value)
    }

    /// Stores `value` under `key`, evicting the least recently used entry when full.
    pub fn insert(&self, key: K, value: V) {
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let inner = &mut *guard;
        if inner.capacity == 0 {
            return;
        }
        inner.tick += 1;
        let tick = inner.tick;
        if let Some((_, old)) = inner.map.insert(key.clone(), (value, tick)) {
            inner.by_age.remove(&old);
        }
        inner.by_age.insert(tick, key);
        while inner.map.len() > inner.capacity {
            let Some((_, oldest)) = inner.by_age.pop_first() else {
                break;
            };
            inner.map.remove(&oldest);
        }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .map
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_least_recently_used() {
        let lru = Lru::new(2);
        lru.insert("a", 1);
        lru.insert("b", 2);
        assert_eq!(lru.get(&"a"), Some(1)); // "b" is now the oldest
        lru.insert("c", 3);
        assert_eq!(lru.get(&"b"), None);
        assert_eq!(lru.get(&"a"), Some(1));
        assert_eq!(lru.get(&"c"), Some(3));
        assert_eq!(lru.len(), 2);
    }

    #[test]
    fn reinsert_replaces_without_growing() {
        let lru = Lru::new(2);
        lru.insert("a", 1);
        lru.insert("a", 5);
        assert_eq!(lru.len(), 1);
        assert_eq!(lru.get(&"a"), Some(5));
    }

    #[test]
    fn zero_capacity_stores_nothing() {
        let lru = Lru::new(0);
        lru.insert("a", 1);
        assert_eq!(lru.len(), 0);
        assert_eq!(lru.get(&"a"), None);
    }
}
