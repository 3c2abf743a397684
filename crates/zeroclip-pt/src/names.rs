//! Turns an unpickled object graph into `state_dict`-style tensor names.
//!
//! TorchScript archives pickle the module tree (`CLIP` → `visual` → `transformer` → ...) with
//! each module's parameters, buffers and submodules as attributes, so names are attribute paths
//! joined with dots, as `module.state_dict()` joins them. `torch.save` files hold a dict; training
//! checkpoints (open_clip) nest it under `state_dict`, with the `module.` prefix DataParallel adds.

use crate::error::{format_fault, Fault};
use crate::value::{key_text, Arena, Node, NodeId, TensorRef, Value};
use std::collections::HashSet;

/// Work allowed while walking one graph, counted as one unit per container visited or entry
/// listed plus one per byte of every key read and name built. A memo lets a small file describe a
/// huge tree, and a long key shared down a subtree makes long names without many nodes; both
/// cost work here, so a few kilobytes of pickle cannot drive the walk to gigabytes. OpenAI's
/// largest checkpoint uses well under 1 % of it.
pub(crate) const WORK_BUDGET: usize = 1 << 26;

/// How deeply containers may nest: a `state_dict` name has a few dots (OpenAI's deepest is
/// `visual.transformer.resblocks.11.attn.out_proj.weight`), so this only refuses hostile files.
pub(crate) const MAX_DEPTH: usize = 256;

/// Named tensors in pickle order: module attributes and dict items, joined with dots.
///
/// The walk keeps its own stack, so a pickle nested however deeply cannot overflow the thread's.
pub(crate) fn tensors(arena: &Arena, root: &Value) -> Result<Vec<(String, TensorRef)>, Fault> {
    let mut walk = Walk {
        arena,
        out: Vec::new(),
        frames: Vec::new(),
        on_path: HashSet::new(),
        work: 0,
    };
    walk.visit(root, String::new())?;
    while let Some(frame) = walk.frames.last_mut() {
        let Some((key, child)) = frame.entries.next() else {
            let done = walk.frames.pop().expect("a frame was just read");
            walk.on_path.remove(&done.id);
            continue;
        };
        let Some(key) = key_text(&key) else { continue };
        let name = if frame.name.is_empty() {
            key
        } else {
            format!("{}.{key}", frame.name)
        };
        walk.visit(&child, name)?;
    }
    Ok(walk.out)
}

/// For `torch.save` files: the nested `state_dict` of a training checkpoint if there is one, the
/// root otherwise.
pub(crate) fn state_dict_root(arena: &Arena, root: &Value) -> Value {
    if let Some(entries) = arena.dict_entries(root) {
        for (k, v) in entries {
            if k.as_str() == Some("state_dict") && matches!(arena.get(&v), Some(Node::Dict(_))) {
                return v;
            }
        }
    }
    root.clone()
}

/// Removes the `module.` prefix `torch.nn.DataParallel` puts on every name, as open_clip does
/// when every name carries it.
pub(crate) fn strip_data_parallel(named: &mut [(String, TensorRef)]) {
    const PREFIX: &str = "module.";
    if !named.is_empty() && named.iter().all(|(n, _)| n.starts_with(PREFIX)) {
        for (n, _) in named.iter_mut() {
            n.drain(..PREFIX.len());
        }
    }
}

/// A container being listed: its remaining entries and the name its children extend.
struct Frame {
    id: NodeId,
    name: String,
    entries: std::vec::IntoIter<(Value, Value)>,
}

struct Walk<'a> {
    arena: &'a Arena,
    out: Vec<(String, TensorRef)>,
    /// The containers on the current path, innermost last.
    frames: Vec<Frame>,
    /// Their ids: a cycle is not followed.
    on_path: HashSet<NodeId>,
    work: usize,
}

impl Walk<'_> {
    fn charge(&mut self, units: usize) -> Result<(), Fault> {
        self.work = self.work.saturating_add(units);
        if self.work > WORK_BUDGET {
            return Err(format_fault!(
                "object graph too large to list (over {WORK_BUDGET} units of work: \
                 containers, entries and name bytes)"
            ));
        }
        Ok(())
    }

    /// Records a tensor, or opens a container whose entries the caller's loop then lists.
    fn visit(&mut self, v: &Value, name: String) -> Result<(), Fault> {
        let Value::Node(id) = v else {
            return Ok(());
        };
        self.charge(1 + name.len())?;
        if self.on_path.contains(id) {
            return Ok(());
        }
        let arena = self.arena;
        let dict = match arena.get(v) {
            Some(Node::Tensor(t)) => {
                self.out.push((name, t.clone()));
                return Ok(());
            }
            Some(Node::Dict(_)) => v,
            Some(Node::Object {
                state: Some(state), ..
            }) => state,
            _ => return Ok(()),
        };
        // Charged before the entries are copied out, so a huge shared dict costs its size.
        self.charge(arena.dict_cost(dict))?;
        let Some(entries) = arena.dict_entries(dict) else {
            return Ok(());
        };
        if self.frames.len() >= MAX_DEPTH {
            return Err(format_fault!(
                "object graph nested deeper than {MAX_DEPTH} containers at `{}`",
                truncated(&name)
            ));
        }
        self.on_path.insert(*id);
        self.frames.push(Frame {
            id: *id,
            name,
            entries: entries.into_iter(),
        });
        Ok(())
    }
}

/// A name cut to a length fit for an error message.
fn truncated(name: &str) -> String {
    const SHOWN: usize = 80;
    match name.char_indices().nth(SHOWN) {
        Some((at, _)) => format!("{}...", &name[..at]),
        None => name.to_owned(),
    }
}
