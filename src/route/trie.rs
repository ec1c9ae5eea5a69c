//! A persistent hash trie (HAMT) over `u64` keys: the maps inside one index snapshot.
//!
//! The topic index publishes its whole state as one immutable snapshot that readers load with no
//! lock (DESIGN §1: route runs on every ingest thread). A write must not copy a million-entry
//! map, so the maps are tries whose nodes are shared between snapshots: the writer changes its
//! working copy with `Arc::make_mut`, which copies only the nodes on the path to the key that are
//! still shared with a published snapshot (at most `⌈64 / 5⌉` of them, each at most 32 children)
//! and edits in place the ones it already copied. Old nodes are freed when the last snapshot
//! holding them is dropped; removing a key folds single-leaf nodes back into their parent, so a
//! trie never keeps more nodes than its keys need, however it was churned.
//!
//! Keys are already uniform (keyed SipHash digests), so the trie needs no hashing of its own and
//! two keys are equal only when they are the same key.

use std::sync::Arc;

const BITS: u32 = 5;
const MASK: u64 = (1 << BITS) - 1;

/// An immutable-once-published map from `u64` to `V`. Cloning is `O(1)`.
pub(super) struct Trie<V> {
    root: Option<Arc<TNode<V>>>,
    len: usize,
}

struct TNode<V> {
    /// Bit `i` is set when the child for 5-bit index `i` exists; children are stored in index
    /// order, compacted.
    bitmap: u32,
    /// Exactly sized: a trie built in one batch keeps no spare capacity.
    children: Box<[Child<V>]>,
}

enum Child<V> {
    Leaf(u64, V),
    Node(Arc<TNode<V>>),
}

impl<V: Clone> Clone for Trie<V> {
    fn clone(&self) -> Self {
        Trie {
            root: self.root.clone(),
            len: self.len,
        }
    }
}

impl<V: Clone> Clone for TNode<V> {
    fn clone(&self) -> Self {
        TNode {
            bitmap: self.bitmap,
            children: self.children.clone(),
        }
    }
}

impl<V: Clone> Clone for Child<V> {
    fn clone(&self) -> Self {
        match self {
            Child::Leaf(k, v) => Child::Leaf(*k, v.clone()),
            Child::Node(n) => Child::Node(Arc::clone(n)),
        }
    }
}

/// The child index of `key` at `shift`, as a bitmap bit.
#[inline]
fn bit(key: u64, shift: u32) -> u32 {
    1 << (key.checked_shr(shift).unwrap_or(0) & MASK)
}

/// Where the child for `bit` sits (or would sit) in `children`.
#[inline]
fn pos(bitmap: u32, bit: u32) -> usize {
    (bitmap & (bit - 1)).count_ones() as usize
}

impl<V: Clone> Trie<V> {
    pub fn new() -> Self {
        Trie { root: None, len: 0 }
    }

    #[inline]
    pub fn get(&self, key: u64) -> Option<&V> {
        let mut node = self.root.as_deref()?;
        let mut shift = 0;
        loop {
            let b = bit(key, shift);
            if node.bitmap & b == 0 {
                return None;
            }
            match node.children.get(pos(node.bitmap, b))? {
                Child::Leaf(k, v) => return (*k == key).then_some(v),
                Child::Node(n) => {
                    node = n;
                    shift += BITS;
                }
            }
        }
    }

    /// Inserts or replaces; returns the old value.
    pub fn insert(&mut self, key: u64, value: V) -> Option<V> {
        let old = match &mut self.root {
            None => {
                self.root = Some(Arc::new(TNode {
                    bitmap: bit(key, 0),
                    children: Box::new([Child::Leaf(key, value)]),
                }));
                None
            }
            Some(root) => insert(Arc::make_mut(root), key, value, 0),
        };
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    /// Removes `key`; returns its value. Copies nothing when the key is absent.
    pub fn remove(&mut self, key: u64) -> Option<V> {
        self.get(key)?;
        let root = self.root.as_mut()?;
        let node = Arc::make_mut(root);
        let old = remove(node, key, 0)?;
        if node.children.is_empty() {
            self.root = None;
        }
        self.len -= 1;
        Some(old)
    }
}

/// Inserts `x` at `p` into an exactly sized slice.
fn insert_at<T>(b: &mut Box<[T]>, p: usize, x: T) {
    let mut v = std::mem::take(b).into_vec();
    v.reserve_exact(1);
    v.insert(p.min(v.len()), x);
    *b = v.into_boxed_slice();
}

/// Removes the element at `p` from an exactly sized slice.
fn remove_at<T>(b: &mut Box<[T]>, p: usize) -> Option<T> {
    if p >= b.len() {
        return None;
    }
    let mut v = std::mem::take(b).into_vec();
    let x = v.remove(p);
    *b = v.into_boxed_slice();
    Some(x)
}

fn insert<V: Clone>(node: &mut TNode<V>, key: u64, value: V, shift: u32) -> Option<V> {
    let b = bit(key, shift);
    let p = pos(node.bitmap, b);
    if node.bitmap & b == 0 {
        insert_at(&mut node.children, p, Child::Leaf(key, value));
        node.bitmap |= b;
        return None;
    }
    match &mut node.children[p] {
        Child::Leaf(k, v) if *k == key => Some(std::mem::replace(v, value)),
        Child::Leaf(..) => {
            // Two keys share this index: push both one level down.
            let placeholder = Child::Node(Arc::new(TNode {
                bitmap: 0,
                children: Box::new([]),
            }));
            let Child::Leaf(k2, v2) = std::mem::replace(&mut node.children[p], placeholder) else {
                return None;
            };
            node.children[p] = Child::Node(Arc::new(pair(key, value, k2, v2, shift + BITS)));
            None
        }
        Child::Node(n) => insert(Arc::make_mut(n), key, value, shift + BITS),
    }
}

/// A node holding two distinct keys that agree on every index above `shift`.
fn pair<V>(k1: u64, v1: V, k2: u64, v2: V, shift: u32) -> TNode<V> {
    let (b1, b2) = (bit(k1, shift), bit(k2, shift));
    if b1 == b2 {
        TNode {
            bitmap: b1,
            children: Box::new([Child::Node(Arc::new(pair(k1, v1, k2, v2, shift + BITS)))]),
        }
    } else {
        let (a, b) = (Child::Leaf(k1, v1), Child::Leaf(k2, v2));
        TNode {
            bitmap: b1 | b2,
            children: if b1 < b2 {
                Box::new([a, b])
            } else {
                Box::new([b, a])
            },
        }
    }
}

fn remove<V: Clone>(node: &mut TNode<V>, key: u64, shift: u32) -> Option<V> {
    let b = bit(key, shift);
    if node.bitmap & b == 0 {
        return None;
    }
    let p = pos(node.bitmap, b);
    let child = match node.children.get_mut(p)? {
        Child::Leaf(k, _) if *k == key => {
            node.bitmap &= !b;
            return match remove_at(&mut node.children, p) {
                Some(Child::Leaf(_, v)) => Some(v),
                _ => None,
            };
        }
        Child::Leaf(..) => return None,
        Child::Node(n) => Arc::make_mut(n),
    };
    let old = remove(child, key, shift + BITS)?;
    // A node left with a single leaf is that leaf (keeps the trie canonical and small).
    if child.children.len() == 1
        && matches!(child.children[0], Child::Leaf(..))
        && let Some(leaf) = remove_at(&mut child.children, 0)
    {
        node.children[p] = leaf;
    }
    Some(old)
}

#[cfg(test)]
impl<V: Clone> Trie<V> {
    pub fn len(&self) -> usize {
        self.len
    }

    /// Visits every entry.
    pub fn for_each(&self, mut f: impl FnMut(u64, &V)) {
        fn walk<V>(n: &TNode<V>, f: &mut impl FnMut(u64, &V)) {
            for c in &n.children {
                match c {
                    Child::Leaf(k, v) => f(*k, v),
                    Child::Node(c) => walk(c, f),
                }
            }
        }
        if let Some(r) = &self.root {
            walk(r, &mut f);
        }
    }

    /// Checks the structural invariants; returns the number of nodes.
    fn check(&self) -> usize {
        fn walk<V>(n: &TNode<V>, is_root: bool) -> (usize, usize) {
            assert_eq!(n.bitmap.count_ones() as usize, n.children.len());
            assert!(!n.children.is_empty(), "empty node");
            if !is_root {
                assert!(
                    n.children.len() > 1 || matches!(n.children[0], Child::Node(_)),
                    "a single leaf must be folded into its parent"
                );
            }
            let (mut leaves, mut nodes) = (0, 1);
            for c in &n.children {
                match c {
                    Child::Leaf(..) => leaves += 1,
                    Child::Node(c) => {
                        let (l, k) = walk(c, false);
                        leaves += l;
                        nodes += k;
                    }
                }
            }
            (leaves, nodes)
        }
        match &self.root {
            None => {
                assert_eq!(self.len, 0);
                0
            }
            Some(r) => {
                let (leaves, nodes) = walk(r, true);
                assert_eq!(leaves, self.len);
                nodes
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn random_operations_agree_with_a_btreemap() {
        let mut rng = fastrand::Rng::with_seed(3);
        let mut model = BTreeMap::new();
        let mut trie = Trie::new();
        let mut snapshots = Vec::new();
        // Keys that often share low bits force deep paths.
        let key = |rng: &mut fastrand::Rng| match rng.u8(..3) {
            0 => rng.u64(..64),
            1 => rng.u64(..) & 0xF000_0000_0000_03FF,
            _ => rng.u64(..) | 0xFFFF,
        };
        for step in 0..30_000u32 {
            let k = key(&mut rng);
            if rng.u8(..3) == 0 {
                assert_eq!(trie.remove(k), model.remove(&k), "step {step}");
            } else {
                assert_eq!(trie.insert(k, step), model.insert(k, step), "step {step}");
            }
            if step % 1000 == 0 {
                trie.check();
                snapshots.push((trie.clone(), model.clone()));
            }
        }
        for (k, v) in &model {
            assert_eq!(trie.get(*k), Some(v));
        }
        assert_eq!(
            trie.get(0xDEAD_BEEF_0000_0001),
            model.get(&0xDEAD_BEEF_0000_0001)
        );
        // Snapshots taken along the way never saw the later writes.
        for (snap, model) in &snapshots {
            assert_eq!(snap.len(), model.len());
            for (k, v) in model {
                assert_eq!(snap.get(*k), Some(v));
            }
        }
        let keys: Vec<u64> = model.keys().copied().collect();
        for k in keys {
            assert!(trie.remove(k).is_some());
        }
        assert_eq!(trie.check(), 0, "no nodes left");
        assert!(trie.remove(1).is_none());
    }

    #[test]
    fn keys_equal_up_to_the_last_bits_nest_to_the_bottom() {
        let mut trie = Trie::new();
        let a = 0x7FFF_FFFF_FFFF_FFFF;
        let b = 0xFFFF_FFFF_FFFF_FFFF;
        trie.insert(a, 1);
        trie.insert(b, 2);
        assert_eq!(trie.check(), 13, "one node per 5-bit level");
        assert_eq!((trie.get(a), trie.get(b)), (Some(&1), Some(&2)));
        trie.remove(a);
        assert_eq!(trie.check(), 1);
        assert_eq!(trie.get(b), Some(&2));
    }

    #[test]
    fn writes_copy_only_shared_nodes() {
        let mut trie = Trie::new();
        for k in 0..5000u64 {
            trie.insert(k.wrapping_mul(0x9E37_79B9_7F4A_7C15), k);
        }
        let before = trie.clone();
        trie.insert(7, 7);
        trie.remove(0);
        assert!(before.get(7).is_none());
        assert_eq!(before.get(0), Some(&0));
        assert_eq!(trie.get(7), Some(&7));
        assert!(trie.get(0).is_none());
    }
}
