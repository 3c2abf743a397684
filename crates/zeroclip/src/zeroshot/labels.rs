//! Label sets: the built-in ones (ImageNet-1k with OpenAI's cleaned class names, CIFAR-10,
//! CIFAR-100; data files with attribution in `data/`) and user label files.

use crate::{Error, Result};
use std::path::Path;

use super::templates::data_lines;

const IMAGENET1K: &str = include_str!("../../data/imagenet1k.txt");
const CIFAR10: &str = include_str!("../../data/cifar10.txt");
const CIFAR100: &str = include_str!("../../data/cifar100.txt");

/// A built-in label set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelSet {
    /// ImageNet-1k, OpenAI's cleaned class names, in class-index order.
    ImageNet,
    /// CIFAR-10's 10 classes.
    Cifar10,
    /// CIFAR-100's 100 fine classes, with spaces for underscores.
    Cifar100,
}

impl LabelSet {
    /// Names accepted by [`LabelSet::from_name`].
    pub const NAMES: [&'static str; 3] = ["imagenet", "cifar10", "cifar100"];

    /// A built-in label set by name: `imagenet` (or `imagenet1k`), `cifar10`, `cifar100`.
    pub fn from_name(name: &str) -> Result<Self> {
        match name.to_ascii_lowercase().replace('-', "").as_str() {
            "imagenet" | "imagenet1k" => Ok(LabelSet::ImageNet),
            "cifar10" => Ok(LabelSet::Cifar10),
            "cifar100" => Ok(LabelSet::Cifar100),
            _ => Err(Error::UnknownName {
                kind: "label set",
                name: name.to_string(),
                known: Self::NAMES.join(", "),
            }),
        }
    }

    /// The class names, in the dataset's class-index order.
    pub fn labels(self) -> Vec<String> {
        data_lines(match self {
            LabelSet::ImageNet => IMAGENET1K,
            LabelSet::Cifar10 => CIFAR10,
            LabelSet::Cifar100 => CIFAR100,
        })
    }
}

/// The largest labels file read: 16 MiB is a million labels of 16 characters, far more than a
/// classifier of any use holds.
pub const MAX_LABELS_FILE_BYTES: u64 = 16 << 20;

/// Labels from a text file: one label per line; surrounding whitespace is dropped and blank
/// lines are skipped. A line that is not UTF-8 is an error naming its line and column.
///
/// The file must be a regular file of at most 16 MiB (`MAX_LABELS_FILE_BYTES`).
pub fn read_labels_file(path: &Path) -> Result<Vec<String>> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let bytes = zeroclip_fs::read_capped(path, MAX_LABELS_FILE_BYTES).map_err(io)?;
    match String::from_utf8(bytes) {
        Ok(text) => Ok(parse_labels(&text)),
        Err(e) => {
            let bytes = e.as_bytes();
            let bad = e.utf8_error().valid_up_to();
            let line_start = bytes[..bad]
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |i| i + 1);
            let line = 1 + bytes[..bad].iter().filter(|&&b| b == b'\n').count();
            Err(io(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "line {line} is not valid UTF-8 (bad byte at column {})",
                    bad - line_start + 1
                ),
            )))
        }
    }
}

/// Checks labels given by a user (not the built-in sets) with the one rule set that the command
/// line and the server share: at least one label, none empty or blank, none given twice.
/// Errors name the label (shortened).
pub fn validate_labels(labels: &[String]) -> Result<()> {
    if labels.is_empty() {
        return Err(Error::NoLabels);
    }
    let mut seen = std::collections::HashSet::new();
    for (i, label) in labels.iter().enumerate() {
        let reason = if label.trim().is_empty() {
            format!("is empty (label {} of {})", i + 1, labels.len())
        } else if !seen.insert(label.as_str()) {
            "is given more than once".to_string()
        } else {
            continue;
        };
        return Err(Error::InvalidLabel {
            label: label.clone(),
            reason,
        });
    }
    Ok(())
}

/// Labels from text, as [`read_labels_file`] reads them.
pub fn parse_labels(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_files_over_the_cap_are_refused() {
        let path = std::env::temp_dir().join(format!("zeroclip-labels-{}.txt", std::process::id()));
        let line = "a label of some length\n";
        let n = MAX_LABELS_FILE_BYTES as usize / line.len() + 1;
        std::fs::write(&path, line.repeat(n)).unwrap();
        let err = read_labels_file(&path).unwrap_err();
        std::fs::remove_file(&path).unwrap();
        assert!(err.to_string().contains("over the limit"), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn a_device_as_labels_file_is_refused_unread() {
        // /dev/zero grew to gigabytes before "out of memory".
        let err = read_labels_file(Path::new("/dev/zero")).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
    }

    #[test]
    fn builtin_sets_have_their_sizes_and_known_entries() {
        let imagenet = LabelSet::ImageNet.labels();
        assert_eq!(imagenet.len(), 1000);
        assert_eq!(imagenet[0], "tench");
        assert_eq!(imagenet[999], "toilet paper");
        let c10 = LabelSet::Cifar10.labels();
        assert_eq!(c10.len(), 10);
        assert_eq!(c10[0], "airplane");
        assert_eq!(c10[9], "truck");
        let c100 = LabelSet::Cifar100.labels();
        assert_eq!(c100.len(), 100);
        assert_eq!(c100[1], "aquarium fish");
        assert!(c100.iter().all(|l| !l.contains('_')));
    }

    #[test]
    fn names() {
        assert_eq!(
            LabelSet::from_name("ImageNet-1k").unwrap(),
            LabelSet::ImageNet
        );
        assert_eq!(LabelSet::from_name("cifar100").unwrap(), LabelSet::Cifar100);
        let err = LabelSet::from_name("mnist").unwrap_err().to_string();
        assert!(err.contains("mnist") && err.contains("cifar10"), "{err}");
    }

    #[test]
    fn label_files_skip_blank_lines_and_trim() {
        assert_eq!(
            parse_labels("a dog\r\n\n  a cat  \n\ta diagram"),
            vec!["a dog", "a cat", "a diagram"]
        );
        assert!(validate_labels(&["a dog".into(), "a cat".into()]).is_ok());
        for bad in [
            vec![],
            vec!["a dog".into(), " ".into()],
            vec!["x".into(), "x".into()],
        ] {
            let err = validate_labels(&bad).unwrap_err();
            assert!(
                matches!(err, Error::NoLabels | Error::InvalidLabel { .. }),
                "{err}"
            );
        }
        let dir = std::env::temp_dir().join(format!("zeroclip-labels-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("labels.txt");
        std::fs::write(&file, b"a dog\na cat\nab\xffc\n").unwrap();
        let err = read_labels_file(&file).unwrap_err().to_string();
        assert!(
            err.contains("line 3 is not valid UTF-8 (bad byte at column 3)"),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(&dir);
        let missing = Path::new("/nonexistent/labels.txt");
        let err = read_labels_file(missing).unwrap_err().to_string();
        assert!(err.contains("/nonexistent/labels.txt"), "{err}");
    }
}
