//! Turns command-line inputs into the list of images to process: files as given, directories
//! walked recursively (image files only, sorted), glob patterns expanded, and `-` read as one path
//! per line from stdin. An input that yields nothing is kept as an error entry, so that every
//! input appears in the output.

use std::io::BufRead;
use std::path::{Path, PathBuf};
// The same image extensions as the labelled data sets of `eval` and `adapt`.
use zeroclip::eval::dataset::has_image_extension;

/// One image to process, or the reason an input produced none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// The name printed in the output: the path as given or as found.
    pub name: String,
    /// `Ok(path)` to read, or `Err(message)` when the input is already known to have failed.
    pub path: Result<PathBuf, String>,
}

impl Item {
    /// What the library's batch pipeline runs for this input.
    pub fn source(&self) -> zeroclip::batch::ImageSource {
        match &self.path {
            Ok(path) => zeroclip::batch::ImageSource::Path(path.clone()),
            Err(e) => zeroclip::batch::ImageSource::Failed(e.clone()),
        }
    }

    fn ok(path: PathBuf) -> Self {
        Item {
            name: path.display().to_string(),
            path: Ok(path),
        }
    }

    fn err(name: &str, message: impl Into<String>) -> Self {
        Item {
            name: name.to_string(),
            path: Err(message.into()),
        }
    }
}

/// Expands `inputs` in order; `-` reads paths from `stdin`.
pub fn expand(inputs: &[String], stdin: &mut dyn BufRead) -> std::io::Result<Vec<Item>> {
    let mut items = Vec::new();
    let mut stdin_used = false;
    for input in inputs {
        if input == "-" {
            if stdin_used {
                continue;
            }
            stdin_used = true;
            for line in stdin.lines() {
                let line = line?;
                let line = line.trim_end_matches(['\r', '\n']);
                if !line.trim().is_empty() {
                    expand_one(line, &mut items);
                }
            }
        } else {
            expand_one(input, &mut items);
        }
    }
    Ok(items)
}

fn expand_one(input: &str, items: &mut Vec<Item>) {
    let path = Path::new(input);
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => walk_dir(input, path, items),
        Ok(_) => items.push(Item::ok(path.to_path_buf())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if is_glob(input) {
                expand_glob(input, items);
            } else {
                items.push(Item::err(input, "no such file or directory"));
            }
        }
        // A symlink loop, a permission problem...: the real reason, not "not found".
        Err(e) => items.push(Item::err(input, e.to_string())),
    }
}

fn is_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

fn expand_glob(pattern: &str, items: &mut Vec<Item>) {
    let paths = match glob::glob(pattern) {
        Ok(p) => p,
        Err(e) => {
            items.push(Item::err(pattern, format!("invalid glob pattern: {e}")));
            return;
        }
    };
    let before = items.len();
    for entry in paths {
        match entry {
            Ok(p) if p.is_dir() => walk_dir(&p.display().to_string(), &p, items),
            Ok(p) => items.push(Item::ok(p)),
            Err(e) => items.push(Item::err(
                &e.path().display().to_string(),
                e.error().to_string(),
            )),
        }
    }
    if items.len() == before {
        items.push(Item::err(pattern, "no file matches this pattern"));
    }
}

fn walk_dir(name: &str, dir: &Path, items: &mut Vec<Item>) {
    let before = items.len();
    for entry in walkdir::WalkDir::new(dir)
        .follow_links(true)
        .sort_by_file_name()
    {
        match entry {
            Ok(e) if e.file_type().is_file() && has_image_extension(e.path()) => {
                items.push(Item::ok(e.into_path()))
            }
            Ok(_) => {}
            Err(e) => {
                let at = e
                    .path()
                    .map_or_else(|| name.to_string(), |p| p.display().to_string());
                let reason = e
                    .io_error()
                    .map_or_else(|| e.to_string(), |io| io.to_string());
                items.push(Item::err(&at, reason));
            }
        }
    }
    if items.len() == before {
        items.push(Item::err(name, "directory holds no image files"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_tree() -> PathBuf {
        let d = std::env::temp_dir().join(format!("zeroclip-inputs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("sub")).unwrap();
        for f in ["b.png", "a.JPG", "notes.txt", "sub/c.webp"] {
            std::fs::write(d.join(f), b"x").unwrap();
        }
        std::fs::create_dir_all(d.join("empty")).unwrap();
        d
    }

    fn names(items: &[Item], root: &Path) -> Vec<String> {
        items
            .iter()
            .map(|i| {
                let n = i.name.replace(&root.display().to_string(), "R");
                match &i.path {
                    Ok(_) => n,
                    Err(e) => format!("{n}: {e}"),
                }
            })
            .collect()
    }

    #[test]
    fn files_dirs_globs_stdin_and_failures_in_order() {
        let root = temp_tree();
        let r = root.display().to_string();
        let mut stdin = std::io::Cursor::new(format!("{r}/b.png\n\n{r}/nope.png\n"));
        let inputs = vec![
            format!("{r}/notes.txt"),
            r.clone(),
            format!("{r}/*.png"),
            format!("{r}/*.gif"),
            "-".to_string(),
            format!("{r}/empty"),
            format!("{r}/missing.png"),
        ];
        let items = expand(&inputs, &mut stdin).unwrap();
        assert_eq!(
            names(&items, &root),
            vec![
                "R/notes.txt",
                "R/a.JPG",
                "R/b.png",
                "R/sub/c.webp",
                "R/b.png",
                "R/*.gif: no file matches this pattern",
                "R/b.png",
                "R/nope.png: no such file or directory",
                "R/empty: directory holds no image files",
                "R/missing.png: no such file or directory",
            ]
        );
        let _ = std::fs::remove_dir_all(&root);
    }

    #[cfg(unix)]
    #[test]
    fn a_symlink_loop_is_not_reported_as_missing() {
        let d = std::env::temp_dir().join(format!("zeroclip-loop-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        let (a, b) = (d.join("a.png"), d.join("b.png"));
        std::os::unix::fs::symlink(&b, &a).unwrap();
        std::os::unix::fs::symlink(&a, &b).unwrap();
        let input = a.display().to_string();
        let items = expand(std::slice::from_ref(&input), &mut std::io::empty()).unwrap();
        let error = items[0].path.as_ref().unwrap_err();
        assert!(error.contains("symbolic links"), "{error}");
        let _ = std::fs::remove_dir_all(&d);
    }
}
