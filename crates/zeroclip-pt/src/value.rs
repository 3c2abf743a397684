//! The object graph a pickle builds: small values inline, containers in an arena.
//!
//! Python pickles share objects through the memo and mutate containers after memoizing them
//! (`EMPTY_DICT`, `BINPUT`, then `SETITEMS`), so containers are arena slots addressed by index:
//! sharing and later mutation behave as in Python, cycles cannot leak, and dropping the graph
//! never recurses however deeply a hostile file nests it.

use crate::DType;
use std::rc::Rc;

/// Index of a [`Node`] in the [`Arena`].
pub(crate) type NodeId = usize;

/// A pickle value. Cloning is cheap: containers are shared by [`NodeId`].
// Payloads that no tensor needs (floats, bytes, class names) are kept for error messages.
#[allow(dead_code)]
#[derive(Clone, Debug)]
pub(crate) enum Value {
    None,
    Bool(bool),
    Int(i64),
    /// An integer too wide for `i64`, as little-endian two's-complement bytes (LONG1/LONG4).
    BigInt(Rc<[u8]>),
    Float(f64),
    Str(Rc<str>),
    Bytes(Rc<[u8]>),
    Node(NodeId),
}

/// An allowlisted Python global, resolved by name when the pickle mentions it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Global {
    /// `torch._utils._rebuild_tensor_v2` / `_rebuild_tensor`.
    RebuildTensor,
    /// `torch._utils._rebuild_parameter` / `_rebuild_parameter_with_state`.
    RebuildParameter,
    /// `torch._tensor._rebuild_from_type_v2`: applies a reconstructor, then retypes to a tensor class.
    RebuildFromType,
    /// `torch.Tensor` / `torch.nn.parameter.Parameter`, only as the class argument of the above.
    TensorClass,
    /// `collections.OrderedDict`.
    OrderedDict,
    /// `torch.FloatStorage` and friends: the dtype of a persistent storage id.
    Storage(DType),
    /// `torch.Size`: a tuple.
    Size,
    /// `torch.jit._pickle.restore_type_tag` and `build_*list`: return their first argument.
    Identity,
    /// A `__torch__.*` TorchScript class: an opaque attribute container.
    ScriptClass(String),
}

/// Where a tensor's elements live: a storage key of the file, read later by the container format.
#[derive(Clone, Debug)]
pub(crate) struct StorageRef {
    pub key: String,
    pub dtype: DType,
    /// Elements of `dtype` the storage holds, as the pickle declares.
    pub numel: usize,
    /// Legacy storage views: element offset into the root storage named by `key`.
    pub view_offset: usize,
}

/// A tensor as the pickle describes it; bytes are attached by the container format.
#[derive(Clone, Debug)]
pub(crate) struct TensorRef {
    pub storage: StorageRef,
    pub offset: usize,
    pub shape: Vec<usize>,
    pub strides: Vec<usize>,
}

/// An arena slot.
#[allow(dead_code)]
#[derive(Debug)]
pub(crate) enum Node {
    Tuple(Vec<Value>),
    List(Vec<Value>),
    /// Insertion-ordered; a repeated key is resolved when the dict is read (last value wins).
    Dict(Vec<(Value, Value)>),
    Global(Global),
    /// A TorchScript module or other script object, with the state `BUILD` gave it.
    Object {
        class: String,
        state: Option<Value>,
    },
    Storage(StorageRef),
    Tensor(TensorRef),
}

/// Owner of all container nodes of one pickle.
#[derive(Debug, Default)]
pub(crate) struct Arena {
    nodes: Vec<Node>,
    /// Values and sizes stored by the nodes created so far (see [`Arena::cells`]).
    cells: usize,
}

impl Arena {
    pub(crate) fn push(&mut self, node: Node) -> Value {
        let cells = match &node {
            Node::Tuple(items) | Node::List(items) => items.len(),
            Node::Dict(entries) => 2 * entries.len(),
            Node::Tensor(t) => t.shape.len() + t.strides.len(),
            _ => 0,
        };
        self.cells = self.cells.saturating_add(1 + cells);
        self.nodes.push(node);
        Value::Node(self.nodes.len() - 1)
    }

    pub(crate) fn get(&self, value: &Value) -> Option<&Node> {
        match value {
            Value::Node(id) => self.nodes.get(*id),
            _ => None,
        }
    }

    pub(crate) fn get_mut(&mut self, value: &Value) -> Option<&mut Node> {
        match value {
            Value::Node(id) => self.nodes.get_mut(*id),
            _ => None,
        }
    }

    /// How many values the nodes were created with. Each opcode pushes at most one value, so
    /// this grows with the pickle's length, except where an allowlisted constructor
    /// (`OrderedDict`, `torch.Size`, a tensor's shape) copies a sequence that the memo lets a
    /// pickle pass again and again: the VM bounds it so that cannot multiply memory.
    pub(crate) fn cells(&self) -> usize {
        self.cells
    }

    /// Every storage the pickle loaded, in order of appearance.
    pub(crate) fn storages(&self) -> impl Iterator<Item = &StorageRef> {
        self.nodes.iter().filter_map(|n| match n {
            Node::Storage(s) => Some(s),
            _ => None,
        })
    }

    /// The elements of a tuple or list.
    pub(crate) fn seq(&self, value: &Value) -> Option<&[Value]> {
        match self.get(value)? {
            Node::Tuple(items) | Node::List(items) => Some(items),
            _ => None,
        }
    }

    /// The work of listing a dict: one per entry plus the bytes of its keys' text (0 if not a
    /// dict). Costs nothing to compute: no key text is built.
    pub(crate) fn dict_cost(&self, value: &Value) -> usize {
        let Some(Node::Dict(entries)) = self.get(value) else {
            return 0;
        };
        entries
            .iter()
            .map(|(k, _)| match k {
                Value::Str(s) => 1 + s.len(),
                Value::Int(_) => 1 + 20,
                _ => 1,
            })
            .fold(0, usize::saturating_add)
    }

    /// A dict's entries with repeated keys collapsed as Python would: first position, last value.
    pub(crate) fn dict_entries(&self, value: &Value) -> Option<Vec<(Value, Value)>> {
        let Node::Dict(entries) = self.get(value)? else {
            return None;
        };
        let mut out: Vec<(Value, Value)> = Vec::with_capacity(entries.len());
        let mut seen = std::collections::HashMap::new();
        for (k, v) in entries {
            match key_text(k) {
                Some(text) => match seen.get(&text) {
                    Some(&i) => out[i] = (k.clone(), v.clone()),
                    None => {
                        seen.insert(text, out.len());
                        out.push((k.clone(), v.clone()));
                    }
                },
                None => out.push((k.clone(), v.clone())),
            }
        }
        Some(out)
    }
}

/// The text of a dict key usable in a dotted name (strings and integers, as in optimizer states).
pub(crate) fn key_text(key: &Value) -> Option<String> {
    match key {
        Value::Str(s) => Some(s.to_string()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

impl Value {
    pub(crate) fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Bool(b) => Some(*b as i64),
            _ => None,
        }
    }

    pub(crate) fn as_usize(&self) -> Option<usize> {
        self.as_int().and_then(|i| usize::try_from(i).ok())
    }

    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
}
