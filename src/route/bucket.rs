//! The entries stored under one index key: an immutable, path-copied vector.
//!
//! Readers walk a bucket with no lock and no reference counting: they reach it through the index
//! snapshot they loaded, and a bucket never changes once published. The single writer (under the
//! index's mutex) derives a new bucket from the current one and puts it in the next snapshot;
//! nodes are reference-counted, so the old ones are freed with the last snapshot that holds them.
//!
//! Most keys hold one entry, stored inline in the trie with no allocation of its own; a key with
//! a handful is a single exactly-sized leaf, so a write copies at most [`WIDTH`] entries. A key shared by many subscriptions (every subscriber to `item:saved`
//! with no attribute condition, say) grows into a 32-way tree: push, pop and set copy one path
//! (`log32(n)` nodes of at most 32 pointers) and share the rest, so a write stays cheap even when
//! a million subscriptions sit under one key, and a reader walks exactly `n` entries.

use std::sync::Arc;

/// log2 of [`WIDTH`].
const BITS: u32 = 5;
/// Entries per leaf and children per inner node.
pub(super) const WIDTH: usize = 1 << BITS;

/// One indexed filter: the item plus where, inside its subscription, the entry came from.
///
/// The indices let the writer recompute the exact key of an entry when it removes it (the
/// attribute condition used for a filter is chosen at insert time), and let a reader verify just
/// the one filter the entry stands for. They pack beside the pointer: an entry is 16 bytes.
pub(super) struct Slot<T> {
    pub item: Arc<T>,
    /// Index into `Subscription::filters`, or [`super::keys::WHOLE`] to verify every filter.
    pub filter: u16,
    /// Index into the filter's `types`, or [`super::keys::NO_TYPE`] for the `*` key.
    pub ty: u16,
    /// Index into the filter's `attributes`, or [`super::keys::NO_COND`] for the no-attribute key.
    pub cond: u8,
    /// Index into that attribute condition's `values`.
    pub val: u16,
}

impl<T> Clone for Slot<T> {
    fn clone(&self) -> Self {
        Slot {
            item: Arc::clone(&self.item),
            filter: self.filter,
            ty: self.ty,
            cond: self.cond,
            val: self.val,
        }
    }
}

impl<T> Slot<T> {
    /// The identity of the stored item (entries are matched by allocation, not by id, so the
    /// old and the new version of a subscription can be told apart during an update).
    pub fn ptr(&self) -> usize {
        Arc::as_ptr(&self.item) as *const () as usize
    }
}

enum Node<T> {
    /// At depth 0: up to `WIDTH` entries, exactly sized.
    Leaf(Arc<[Slot<T>]>),
    /// At depth `d > 0`: up to `WIDTH` children of depth `d - 1`, all full except the last.
    Inner(Arc<[Node<T>]>),
}

impl<T> Clone for Node<T> {
    fn clone(&self) -> Self {
        match self {
            Node::Leaf(s) => Node::Leaf(Arc::clone(s)),
            Node::Inner(c) => Node::Inner(Arc::clone(c)),
        }
    }
}

impl<T> Node<T> {
    /// A chain of `depth` single-child nodes ending in a leaf holding `slot`.
    fn path(depth: u8, slot: Slot<T>) -> Self {
        if depth == 0 {
            Node::Leaf(Arc::new([slot]))
        } else {
            Node::Inner(Arc::new([Node::path(depth - 1, slot)]))
        }
    }

    fn for_each<F: FnMut(&Slot<T>)>(&self, f: &mut F) {
        match self {
            Node::Leaf(s) => s.iter().for_each(f),
            Node::Inner(c) => c.iter().for_each(|n| n.for_each(f)),
        }
    }

    /// Appends `slot` to a node of `depth` that holds `len` entries and is not full.
    fn push(&self, depth: u8, len: usize, slot: Slot<T>) -> Self {
        match self {
            Node::Leaf(s) => {
                let mut v = Vec::with_capacity(s.len() + 1);
                v.extend(s.iter().cloned());
                v.push(slot);
                Node::Leaf(v.into())
            }
            Node::Inner(c) => {
                let shift = BITS * u32::from(depth);
                let ci = len >> shift;
                let mut v = c.to_vec();
                match c.get(ci) {
                    Some(child) => {
                        let rem = len & ((1 << shift) - 1);
                        v[ci] = child.push(depth - 1, rem, slot);
                    }
                    None => v.push(Node::path(depth - 1, slot)),
                }
                Node::Inner(v.into())
            }
        }
    }

    /// Removes the last of `len` entries; `None` for the node when it becomes empty.
    fn pop(&self, depth: u8, len: usize) -> Option<(Option<Self>, Slot<T>)> {
        match self {
            Node::Leaf(s) => {
                let (last, rest) = s.split_last()?;
                let rest = (!rest.is_empty()).then(|| Node::Leaf(rest.into()));
                Some((rest, last.clone()))
            }
            Node::Inner(c) => {
                let shift = BITS * u32::from(depth);
                let ci = len.checked_sub(1)? >> shift;
                let (child, slot) = c.get(ci)?.pop(depth - 1, len - (ci << shift))?;
                let mut v = c[..ci].to_vec();
                v.extend(child);
                let node = (!v.is_empty()).then(|| Node::Inner(v.into()));
                Some((node, slot))
            }
        }
    }

    /// Replaces entry `i`; `None` when `i` is out of range.
    fn set(&self, depth: u8, i: usize, slot: Slot<T>) -> Option<Self> {
        match self {
            Node::Leaf(s) => {
                let mut v = s.to_vec();
                *v.get_mut(i)? = slot;
                Some(Node::Leaf(v.into()))
            }
            Node::Inner(c) => {
                let shift = BITS * u32::from(depth);
                let ci = i >> shift;
                let child = c.get(ci)?.set(depth - 1, i & ((1 << shift) - 1), slot)?;
                let mut v = c.to_vec();
                v[ci] = child;
                Some(Node::Inner(v.into()))
            }
        }
    }

    fn get(&self, depth: u8, i: usize) -> Option<&Slot<T>> {
        match self {
            Node::Leaf(s) => s.get(i),
            Node::Inner(c) => {
                let shift = BITS * u32::from(depth);
                c.get(i >> shift)?.get(depth - 1, i & ((1 << shift) - 1))
            }
        }
    }
}

/// A non-empty, immutable sequence of entries. Every operation returns a new bucket; cloning
/// one costs a reference-count increment.
pub(super) struct Bucket<T>(Repr<T>);

enum Repr<T> {
    /// The common case: one entry, held inline by the map, no allocation of its own.
    One(Slot<T>),
    /// Two to [`WIDTH`] entries.
    Leaf(Arc<[Slot<T>]>),
    /// More than [`WIDTH`] entries.
    Deep(Arc<Tree<T>>),
}

impl<T> Clone for Bucket<T> {
    fn clone(&self) -> Self {
        Bucket(match &self.0 {
            Repr::One(s) => Repr::One(s.clone()),
            Repr::Leaf(s) => Repr::Leaf(Arc::clone(s)),
            Repr::Deep(t) => Repr::Deep(Arc::clone(t)),
        })
    }
}

impl<T> Bucket<T> {
    pub fn single(slot: Slot<T>) -> Self {
        Bucket(Repr::One(slot))
    }

    /// A bucket of at most [`WIDTH`] entries; `None` when `slots` is empty.
    pub fn from_leaf(mut slots: Vec<Slot<T>>) -> Option<Self> {
        debug_assert!(slots.len() <= WIDTH);
        match slots.len() {
            0 => None,
            1 => slots.pop().map(Bucket::single),
            _ => Some(Bucket(Repr::Leaf(slots.into()))),
        }
    }

    pub fn len(&self) -> usize {
        match &self.0 {
            Repr::One(_) => 1,
            Repr::Leaf(s) => s.len(),
            Repr::Deep(t) => t.len(),
        }
    }

    /// Visits every entry in order.
    #[inline]
    pub fn for_each<F: FnMut(&Slot<T>)>(&self, mut f: F) {
        match &self.0 {
            Repr::One(s) => f(s),
            Repr::Leaf(s) => s.iter().for_each(f),
            Repr::Deep(t) => t.root.for_each(&mut f),
        }
    }

    pub fn get(&self, i: usize) -> Option<&Slot<T>> {
        match &self.0 {
            Repr::One(s) => (i == 0).then_some(s),
            Repr::Leaf(s) => s.get(i),
            Repr::Deep(t) => t.root.get(t.depth, i),
        }
    }

    pub fn push(&self, slot: Slot<T>) -> Self {
        Bucket::from_tree(self.tree().push(slot))
    }

    /// Removes the last entry: the rest (`None` when empty) and the entry.
    pub fn pop(&self) -> Option<(Option<Self>, Slot<T>)> {
        let (rest, slot) = self.tree().pop()?;
        Some((rest.map(Bucket::from_tree), slot))
    }

    /// Replaces entry `i`; `None` when `i` is out of range.
    pub fn set(&self, i: usize, slot: Slot<T>) -> Option<Self> {
        Some(Bucket::from_tree(self.tree().set(i, slot)?))
    }

    fn tree(&self) -> Tree<T> {
        match &self.0 {
            Repr::One(s) => Tree {
                root: Node::Leaf(Arc::new([s.clone()])),
                len: 1,
                depth: 0,
            },
            Repr::Leaf(s) => Tree {
                root: Node::Leaf(Arc::clone(s)),
                len: s.len() as u32,
                depth: 0,
            },
            Repr::Deep(t) => (**t).clone(),
        }
    }

    fn from_tree(t: Tree<T>) -> Self {
        match t.root {
            Node::Leaf(s) if s.len() == 1 => Bucket(Repr::One(s[0].clone())),
            Node::Leaf(s) => Bucket(Repr::Leaf(s)),
            root @ Node::Inner(_) => Bucket(Repr::Deep(Arc::new(Tree { root, ..t }))),
        }
    }

    #[cfg(test)]
    fn check_shape(&self) {
        let t = self.tree();
        t.check_shape();
        match &self.0 {
            Repr::One(_) => assert_eq!(t.len(), 1),
            Repr::Leaf(s) => assert!(s.len() > 1 && s.len() <= WIDTH),
            Repr::Deep(_) => assert!(t.len() > WIDTH),
        }
    }

    #[cfg(test)]
    fn depth(&self) -> u8 {
        self.tree().depth
    }
}

/// The general shape every write operates on.
struct Tree<T> {
    root: Node<T>,
    /// A bucket cannot reach 2^32 entries: that alone would be 64 GiB of entries.
    len: u32,
    depth: u8,
}

impl<T> Clone for Tree<T> {
    fn clone(&self) -> Self {
        Tree {
            root: self.root.clone(),
            len: self.len,
            depth: self.depth,
        }
    }
}

impl<T> Tree<T> {
    fn len(&self) -> usize {
        self.len as usize
    }

    fn push(&self, slot: Slot<T>) -> Self {
        let len = self.len();
        let capacity = 1usize << (BITS * (u32::from(self.depth) + 1));
        if len == capacity {
            // Full at this depth: the old root becomes the first child of a new, taller root.
            let new = Node::path(self.depth, slot);
            return Tree {
                root: Node::Inner(Arc::new([self.root.clone(), new])),
                len: self.len + 1,
                depth: self.depth + 1,
            };
        }
        Tree {
            root: self.root.push(self.depth, len, slot),
            len: self.len + 1,
            depth: self.depth,
        }
    }

    /// Removes the last entry: the rest (`None` when empty) and the entry.
    fn pop(&self) -> Option<(Option<Self>, Slot<T>)> {
        let (root, slot) = self.root.pop(self.depth, self.len())?;
        let Some(mut root) = root else {
            return Some((None, slot));
        };
        // Keep the tree as short as its length allows: a root with one child is that child.
        let mut depth = self.depth;
        while let Node::Inner(c) = &root
            && c.len() == 1
        {
            root = c[0].clone();
            depth -= 1;
        }
        let rest = Tree {
            root,
            len: self.len - 1,
            depth,
        };
        Some((Some(rest), slot))
    }

    /// Replaces entry `i`; `None` when `i` is out of range.
    fn set(&self, i: usize, slot: Slot<T>) -> Option<Self> {
        Some(Tree {
            root: self.root.set(self.depth, i, slot)?,
            len: self.len,
            depth: self.depth,
        })
    }

    #[cfg(test)]
    fn check_shape(&self) {
        fn count<T>(n: &Node<T>, depth: u8, last: bool) -> usize {
            match n {
                Node::Leaf(s) => {
                    assert_eq!(depth, 0, "leaf above the bottom");
                    assert!(!s.is_empty() && s.len() <= WIDTH);
                    if !last {
                        assert_eq!(s.len(), WIDTH, "only the last leaf may be partial");
                    }
                    s.len()
                }
                Node::Inner(c) => {
                    assert!(depth > 0, "inner node at the bottom");
                    assert!(!c.is_empty() && c.len() <= WIDTH);
                    if !last {
                        assert_eq!(c.len(), WIDTH, "only the last inner node may be partial");
                    }
                    let n = c.len();
                    c.iter()
                        .enumerate()
                        .map(|(i, ch)| count(ch, depth - 1, last && i + 1 == n))
                        .sum()
                }
            }
        }
        assert_eq!(count(&self.root, self.depth, true), self.len());
        if let Node::Inner(c) = &self.root {
            assert!(c.len() > 1, "a one-child root must collapse");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(v: u32) -> Slot<u32> {
        Slot {
            item: Arc::new(v),
            filter: 0,
            ty: 0,
            cond: 0,
            val: 0,
        }
    }

    fn contents(b: &Option<Bucket<u32>>) -> Vec<u32> {
        let mut v = Vec::new();
        if let Some(b) = b {
            b.check_shape();
            b.for_each(|s| v.push(*s.item));
            for (i, want) in v.iter().enumerate() {
                assert_eq!(b.get(i).map(|s| *s.item), Some(*want));
            }
            assert!(b.get(v.len()).is_none());
        }
        v
    }

    #[test]
    fn entries_pack_into_sixteen_bytes() {
        assert_eq!(std::mem::size_of::<Slot<u32>>(), 16);
    }

    #[test]
    fn random_operations_agree_with_a_vec() {
        let mut rng = fastrand::Rng::with_seed(7);
        let mut model: Vec<u32> = Vec::new();
        let mut b: Option<Bucket<u32>> = None;
        let mut old_versions = Vec::new();
        for step in 0..20_000u32 {
            // Grow to a few thousand (depth 2), then shrink back to zero, then grow again.
            let grow = (step / 5000) % 2 == 0;
            let op = rng.u32(0..10);
            if model.is_empty() || (grow && op < 6) || (!grow && op < 2) {
                b = Some(match &b {
                    Some(b) => b.push(slot(step)),
                    None => Bucket::single(slot(step)),
                });
                model.push(step);
            } else if op < 8 || !grow {
                let (rest, s) = b.as_ref().and_then(|b| b.pop()).expect("non-empty");
                assert_eq!(Some(*s.item), model.pop());
                b = rest;
            } else {
                let i = rng.usize(0..model.len());
                b = b.as_ref().and_then(|b| b.set(i, slot(step + 1_000_000)));
                model[i] = step + 1_000_000;
            }
            if step % 997 == 0 {
                assert_eq!(contents(&b), model, "step {step}");
                // Old versions are untouched by later writes.
                old_versions.push((contents(&b), b.as_ref().map(|b| b.push(slot(0)))));
            }
        }
        assert_eq!(contents(&b), model);
        for (before, pushed) in old_versions {
            let mut after = contents(&pushed);
            after.pop();
            assert_eq!(after, before);
        }
    }

    #[test]
    fn depth_grows_and_collapses_at_the_boundaries() {
        let mut b = Bucket::single(slot(0));
        for i in 1..(WIDTH * WIDTH + 1) as u32 {
            b = b.push(slot(i));
        }
        assert_eq!(b.depth(), 2);
        b.check_shape();
        for _ in 0..(WIDTH * WIDTH + 1 - WIDTH) {
            b = b.pop().and_then(|(rest, _)| rest).expect("non-empty");
        }
        assert_eq!((b.len(), b.depth()), (WIDTH, 0));
        b.check_shape();
        assert!(b.set(WIDTH, slot(1)).is_none());
    }
}
