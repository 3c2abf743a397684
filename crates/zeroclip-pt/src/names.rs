//! Turns an unpickled object graph into `state_dict`-style tensor names.
//!
//! TorchScript archives pickle the module tree (`CLIP` → `visual` → `transformer` → ...) with
//! each module's parameters, buffers and submodules as attributes, so names are attribute paths
//! joined with dots, as `module.state_dict()` joins them. `torch.save` files hold a dict; training
//! checkpoints (open_clip) nest it under `state_dict`, with the `module.` prefix DataParallel adds.

use crate::error::{format_fault, Fault};
use crate::value::{key_text, Arena, Node, TensorRef, Value};

/// Visits allowed while walking one graph: a memo can make a small file describe a huge tree.
const VISIT_BUDGET: usize = 1 << 20;

/// Named tensors in pickle order: module attributes and dict items, joined with dots.
pub(crate) fn tensors(arena: &Arena, root: &Value) -> Result<Vec<(String, TensorRef)>, Fault> {
    let mut walk = Walk {
        arena,
        out: Vec::new(),
        path: Vec::new(),
        visits: 0,
    };
    walk.value(root, String::new())?;
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

struct Walk<'a> {
    arena: &'a Arena,
    out: Vec<(String, TensorRef)>,
    /// Nodes on the current path: a cycle is not followed.
    path: Vec<usize>,
    visits: usize,
}

impl Walk<'_> {
    fn value(&mut self, v: &Value, name: String) -> Result<(), Fault> {
        let Value::Node(id) = v else {
            return Ok(());
        };
        self.visits += 1;
        if self.visits > VISIT_BUDGET {
            return Err(format_fault!(
                "object graph too large (over {VISIT_BUDGET} visits)"
            ));
        }
        if self.path.contains(id) {
            return Ok(());
        }
        let entries = match self.arena.get(v) {
            Some(Node::Tensor(t)) => {
                self.out.push((name, t.clone()));
                return Ok(());
            }
            Some(Node::Dict(_)) => self.arena.dict_entries(v),
            Some(Node::Object {
                state: Some(state), ..
            }) => self.arena.dict_entries(state),
            _ => None,
        };
        let Some(entries) = entries else {
            return Ok(());
        };
        self.path.push(*id);
        for (k, child) in entries {
            let Some(key) = key_text(&k) else { continue };
            let child_name = if name.is_empty() {
                key
            } else {
                format!("{name}.{key}")
            };
            self.value(&child, child_name)?;
        }
        self.path.pop();
        Ok(())
    }
}
