//! Prompt templates: the sentence each class name is put into before it reaches the text tower.
//!
//! Reproduces OpenAI's ImageNet notebook, where a template is a Python format string and the
//! prompt is `template.format(classname)`. The 80 ImageNet templates and the 7-template subset are
//! shipped as data files (`data/templates_*.txt`, see `data/ATTRIBUTION.md`).

use crate::{Error, Result};

/// The library's default template, as in the CLIP paper and README.
pub const DEFAULT_TEMPLATE: &str = "a photo of a {}.";

/// The template that uses labels as prompts verbatim, as the reference's README example does
/// (`clip.tokenize(["a diagram", "a dog", "a cat"])`). Explicit labels mean this everywhere:
/// `zeroclip classify --labels`, the server's native API and its web page.
pub const AS_WRITTEN_TEMPLATE: &str = "{}";

const IMAGENET80: &str = include_str!("../../data/templates_imagenet80.txt");
const IMAGENET7: &str = include_str!("../../data/templates_imagenet7.txt");

/// A set of prompt templates; each holds `{}` where the class name goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Templates {
    /// One template (the default is [`DEFAULT_TEMPLATE`]). `"{}"` uses labels as prompts verbatim.
    Single(String),
    /// OpenAI's 80 ImageNet templates.
    ImageNet80,
    /// The 7-template subset OpenAI found to do as well on ImageNet.
    ImageNet7,
    /// User templates, ensembled like the built-in sets.
    Custom(Vec<String>),
}

impl Default for Templates {
    fn default() -> Self {
        Templates::Single(DEFAULT_TEMPLATE.to_string())
    }
}

impl Templates {
    /// Labels used as prompts verbatim ([`AS_WRITTEN_TEMPLATE`]).
    pub fn as_written() -> Self {
        Templates::Single(AS_WRITTEN_TEMPLATE.to_string())
    }

    /// Names accepted by [`Templates::from_name`].
    pub const NAMES: [&'static str; 2] = ["imagenet80", "imagenet7"];

    /// A built-in template set by name: `imagenet80` or `imagenet7`.
    pub fn from_name(name: &str) -> Result<Self> {
        match name.to_ascii_lowercase().as_str() {
            "imagenet80" | "imagenet" | "openai" => Ok(Templates::ImageNet80),
            "imagenet7" => Ok(Templates::ImageNet7),
            _ => Err(Error::UnknownName {
                kind: "template set",
                name: name.to_string(),
                known: Self::NAMES.join(", "),
            }),
        }
    }

    /// The templates, in order. Each is checked to be a valid one-field format string.
    pub fn list(&self) -> Result<Vec<String>> {
        let list: Vec<String> = match self {
            Templates::Single(t) => vec![t.clone()],
            Templates::ImageNet80 => data_lines(IMAGENET80),
            Templates::ImageNet7 => data_lines(IMAGENET7),
            Templates::Custom(ts) => ts.clone(),
        };
        if list.is_empty() {
            return Err(Error::NoTemplates);
        }
        for t in &list {
            fill(t, "")?;
        }
        Ok(list)
    }
}

/// The non-empty lines of a shipped data file.
pub(crate) fn data_lines(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// Python's `template.format(label)`: `{}` (once) or `{0}` (any number of times) becomes the
/// label, `{{` and `}}` become literal braces; anything else is an error, as it is in Python.
pub fn fill(template: &str, label: &str) -> Result<String> {
    let bad = |reason: &str| Error::Template {
        template: template.to_string(),
        reason: reason.to_string(),
    };
    let mut out = String::with_capacity(template.len() + label.len());
    let mut chars = template.chars().peekable();
    let mut auto_fields = 0usize;
    let mut fields = 0usize;
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                out.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                out.push('}');
            }
            '{' => {
                let mut field = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some(ch) => field.push(ch),
                        None => return Err(bad("unclosed `{`")),
                    }
                }
                match field.as_str() {
                    "" => auto_fields += 1,
                    "0" => {}
                    _ => return Err(bad("only `{}` or `{0}` may stand for the label")),
                }
                if auto_fields > 1 {
                    return Err(bad("more than one `{}` (write `{0}` to repeat the label)"));
                }
                fields += 1;
                out.push_str(label);
            }
            '}' => return Err(bad("single `}` (write `}}` for a literal brace)")),
            _ => out.push(c),
        }
    }
    if fields == 0 {
        return Err(bad("no `{}` where the label goes"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_follows_python_format() {
        assert_eq!(
            fill("a photo of a {}.", "dog").unwrap(),
            "a photo of a dog."
        );
        assert_eq!(fill("{}", "a diagram").unwrap(), "a diagram");
        assert_eq!(fill("{0} and {0}", "x").unwrap(), "x and x");
        assert_eq!(fill("{{{}}}", "x").unwrap(), "{x}");
        assert_eq!(fill("{} }}", "x").unwrap(), "x }");
    }

    #[test]
    fn fill_rejects_what_python_rejects() {
        for t in ["no field", "{} {}", "{1}", "{name}", "{", "}", "a {} }"] {
            assert!(matches!(fill(t, "x"), Err(Error::Template { .. })), "{t:?}");
        }
    }

    #[test]
    fn builtin_sets_have_openai_counts_and_one_field_each() {
        let t80 = Templates::ImageNet80.list().unwrap();
        let t7 = Templates::ImageNet7.list().unwrap();
        assert_eq!(t80.len(), 80);
        assert_eq!(t7.len(), 7);
        assert_eq!(t80[0], "a bad photo of a {}.");
        assert_eq!(t7[0], "itap of a {}.");
        // The subset is a subset.
        assert!(t7.iter().all(|t| t80.contains(t)), "{t7:?}");
        assert_eq!(
            Templates::default().list().unwrap(),
            vec!["a photo of a {}.".to_string()]
        );
    }

    #[test]
    fn names_and_empty_sets() {
        assert_eq!(
            Templates::from_name("ImageNet7").unwrap(),
            Templates::ImageNet7
        );
        assert_eq!(
            Templates::from_name("imagenet80").unwrap(),
            Templates::ImageNet80
        );
        assert!(matches!(
            Templates::from_name("cifar"),
            Err(Error::UnknownName { .. })
        ));
        assert!(matches!(
            Templates::Custom(vec![]).list(),
            Err(Error::NoTemplates)
        ));
        assert!(Templates::Custom(vec!["bad".into()]).list().is_err());
    }
}
