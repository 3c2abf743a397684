//! Labelled image sets: an ImageFolder directory (`DIR/<class>/<image>`, as torchvision's
//! `ImageFolder`: classes are the sorted sub-directory names) or a CSV manifest of `path,label`
//! against a list of class names.
//!
//! Class names are the folder names with `_` read as a space, or come from a class-names file.
//! Every image found is listed; reading the pixels is the caller's (and may fail per image).

use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// File extensions taken as images (case-insensitive).
pub const IMAGE_EXTENSIONS: &[&str] = &[
    "png", "jpg", "jpeg", "jpe", "jfif", "gif", "bmp", "dib", "webp", "tif", "tiff", "ppm", "pgm",
    "pbm", "pnm", "tga", "ico",
];

/// Images with their true classes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dataset {
    /// Class names, in class-index order.
    pub classes: Vec<String>,
    /// `(image path, class index)`, in folder (or manifest) order.
    pub images: Vec<(PathBuf, usize)>,
}

/// Whether `path` has an image file extension.
pub fn has_image_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn invalid(path: &Path, reason: impl Into<String>) -> Error {
    Error::Dataset {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

impl Dataset {
    /// An ImageFolder: one class per sub-directory of `dir` (sorted by name), its images found
    /// recursively (sorted). `class_names` maps folder names to class names (see
    /// [`read_class_names`]); without it `_` in a folder name reads as a space.
    pub fn image_folder(dir: &Path, class_names: Option<&ClassNames>) -> Result<Self> {
        let mut folders = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
            let entry = entry.map_err(io_err(dir))?;
            if entry.path().is_dir() {
                folders.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        folders.sort();
        if folders.is_empty() {
            return Err(invalid(dir, "no class sub-directories"));
        }
        let classes = match class_names {
            Some(names) => names.resolve(&folders)?,
            None => folders.iter().map(|f| f.replace('_', " ")).collect(),
        };
        let mut images = Vec::new();
        for (c, folder) in folders.iter().enumerate() {
            let root = dir.join(folder);
            for entry in walkdir::WalkDir::new(&root)
                .follow_links(true)
                .sort_by_file_name()
            {
                let entry = entry.map_err(|e| {
                    let at = e.path().unwrap_or(&root).to_path_buf();
                    invalid(&at, e.to_string())
                })?;
                if entry.file_type().is_file() && has_image_extension(entry.path()) {
                    images.push((entry.into_path(), c));
                }
            }
        }
        Ok(Dataset { classes, images })
    }

    /// A manifest CSV of `path,label` rows (an optional `path,label` header; paths relative to the
    /// manifest's directory), each label a name in `classes` or a class index.
    pub fn manifest(path: &Path, classes: Vec<String>) -> Result<Self> {
        let text = zeroclip_fs::read_text_capped(path, MAX_LIST_BYTES).map_err(io_err(path))?;
        let base = path.parent().unwrap_or(Path::new(""));
        let mut images = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let at = |reason: String| invalid(path, format!("line {}: {reason}", n + 1));
            if line.trim().is_empty() {
                continue;
            }
            let fields = split_csv_line(line).map_err(at)?;
            if n == 0 && fields == ["path", "label"] {
                continue;
            }
            let [file, label] = fields.as_slice() else {
                return Err(at(format!(
                    "expected 2 fields (path,label), got {}",
                    fields.len()
                )));
            };
            let index = match classes.iter().position(|c| c == label) {
                Some(i) => i,
                None => match label.parse::<usize>() {
                    Ok(i) if i < classes.len() => i,
                    _ => return Err(at(format!("unknown label {label:?}"))),
                },
            };
            images.push((base.join(file), index));
        }
        Ok(Dataset { classes, images })
    }
}

/// Folder → class name mapping from a class-names file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassNames {
    path: PathBuf,
    /// `(folder, name)` pairs, or names alone in sorted-folder order.
    entries: Vec<(Option<String>, String)>,
}

/// The largest manifest or class-names file read (a regular file; a FIFO or device is refused).
pub const MAX_LIST_BYTES: u64 = 256 << 20;

/// Reads a class-names file: one class per line, either `folder<TAB>name` or just the name (then
/// the lines are the classes in sorted-folder order, as CLIP_benchmark's class-name lists).
pub fn read_class_names(path: &Path) -> Result<ClassNames> {
    let text = zeroclip_fs::read_text_capped(path, MAX_LIST_BYTES).map_err(io_err(path))?;
    let entries = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| match l.split_once('\t') {
            Some((folder, name)) => (Some(folder.to_string()), name.trim().to_string()),
            None => (None, l.trim().to_string()),
        })
        .collect();
    Ok(ClassNames {
        path: path.to_path_buf(),
        entries,
    })
}

impl ClassNames {
    fn resolve(&self, folders: &[String]) -> Result<Vec<String>> {
        if self.entries.iter().all(|(f, _)| f.is_none()) {
            if self.entries.len() != folders.len() {
                return Err(invalid(
                    &self.path,
                    format!(
                        "{} names for {} class folders",
                        self.entries.len(),
                        folders.len()
                    ),
                ));
            }
            return Ok(self.entries.iter().map(|(_, n)| n.clone()).collect());
        }
        folders
            .iter()
            .map(|folder| {
                self.entries
                    .iter()
                    .find(|(f, _)| f.as_deref() == Some(folder))
                    .map(|(_, n)| n.clone())
                    .ok_or_else(|| invalid(&self.path, format!("no name for folder {folder:?}")))
            })
            .collect()
    }
}

/// Splits one CSV line (RFC 4180 quoting: `"a,b"` and `""` inside quotes).
fn split_csv_line(line: &str) -> std::result::Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = line.trim_end_matches('\r').chars().peekable();
    let mut quoted = false;
    while let Some(ch) = chars.next() {
        match (quoted, ch) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (false, '"') if field.is_empty() => quoted = true,
            (false, ',') => fields.push(std::mem::take(&mut field)),
            (_, c) => field.push(c),
        }
    }
    if quoted {
        return Err("unterminated quoted field".into());
    }
    fields.push(field);
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_names_and_manifest() {
        let d = tempfile::tempdir().unwrap();
        for f in [
            "golden_retriever/a.png",
            "cat/b.JPG",
            "cat/sub/c.png",
            "cat/notes.txt",
        ] {
            let p = d.path().join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, b"x").unwrap();
        }
        let ds = Dataset::image_folder(d.path(), None).unwrap();
        assert_eq!(ds.classes, ["cat", "golden retriever"]);
        let rel: Vec<_> = ds
            .images
            .iter()
            .map(|(p, c)| (p.strip_prefix(d.path()).unwrap().display().to_string(), *c))
            .collect();
        assert_eq!(
            rel,
            [
                ("cat/b.JPG".into(), 0),
                ("cat/sub/c.png".into(), 0),
                ("golden_retriever/a.png".into(), 1)
            ]
        );

        let names = d.path().join("names.txt");
        std::fs::write(&names, "golden_retriever\tdog\ncat\tkitty\n").unwrap();
        let ds = Dataset::image_folder(d.path(), Some(&read_class_names(&names).unwrap())).unwrap();
        assert_eq!(ds.classes, ["kitty", "dog"]);
        std::fs::write(&names, "only one\n").unwrap();
        let err = Dataset::image_folder(d.path(), Some(&read_class_names(&names).unwrap()));
        assert!(err
            .unwrap_err()
            .to_string()
            .contains("1 names for 2 class folders"));

        let manifest = d.path().join("m.csv");
        std::fs::write(&manifest, "path,label\ncat/b.JPG,kitty\n\"x,y.png\",1\n").unwrap();
        let ds = Dataset::manifest(&manifest, vec!["kitty".into(), "dog".into()]).unwrap();
        assert_eq!(ds.images[1], (d.path().join("x,y.png"), 1));
        std::fs::write(&manifest, "a.png,wolf\n").unwrap();
        let err = Dataset::manifest(&manifest, vec!["kitty".into()]).unwrap_err();
        assert!(
            err.to_string().contains("line 1: unknown label \"wolf\""),
            "{err}"
        );
    }
}
