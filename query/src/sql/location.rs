//! Where an external table's files may be: `s3://bucket/…` (read with the node's
//! `[object_store]` endpoint and credentials), or a local path under one of `[sql]
//! external_paths` (none by default: a SQL client must not read any file the node can).
//!
//! A local path is judged twice: as written (absolute, no `..`, under an allowed directory),
//! then as the file system resolves it, symbolic links followed, against the allowed
//! directories resolved the same way — so a link inside an allowed directory does not lead a
//! table outside it. A glob (`/data/*.csv`) and a directory are judged by the directory before
//! the first pattern and by everything under it, since a listing follows links. The check runs
//! when a table is built: a link made under an allowed directory afterwards is followed by the
//! table's next listing (a directory others may write to is no place for `external_paths`).

use std::path::{Component, Path, PathBuf};

use url::Url;

use crate::sql::SqlError;

/// Whether tables may read `location`, by the `allowed` local directories of this node.
pub(crate) fn check_location(location: &str, allowed: &[PathBuf]) -> Result<(), SqlError> {
    if let Ok(url) = Url::parse(location)
        && url.scheme() == "s3"
    {
        return Ok(());
    }
    let path = match Url::parse(location) {
        Ok(url) if url.scheme() == "file" => url
            .to_file_path()
            .map_err(|()| SqlError::Invalid(format!("LOCATION {location:?} is not a file path")))?,
        Ok(url) if url.scheme().len() > 1 => {
            return Err(SqlError::Invalid(format!(
                "LOCATION {location:?}: external tables read s3:// or local files, not {}://",
                url.scheme()
            )));
        }
        _ => Path::new(location).to_path_buf(),
    };
    let refused = || {
        if allowed.is_empty() {
            SqlError::Refused(format!(
                "LOCATION {location:?}: local files are read only under [sql] external_paths, and none is \
                 set; use s3://… or set it in the node's configuration"
            ))
        } else {
            SqlError::Refused(format!(
                "LOCATION {location:?} is not an absolute path under [sql] external_paths ({allowed:?})"
            ))
        }
    };
    let as_written = path.is_absolute()
        && !path.components().any(|c| c == Component::ParentDir)
        && allowed.iter().any(|dir| path.starts_with(dir));
    if !as_written {
        return Err(refused());
    }
    // DataFusion splits a glob off a plain path only; a file:// URL is taken whole.
    let fixed = if location.starts_with("file:") { path.clone() } else { before_pattern(&path) };
    let resolved = fixed.canonicalize().map_err(|_| {
        SqlError::Invalid(format!(
            "LOCATION {location:?}: {} is not a file or directory this node can read",
            fixed.display()
        ))
    })?;
    let dirs: Vec<PathBuf> = allowed.iter().filter_map(|dir| dir.canonicalize().ok()).collect();
    if !dirs.iter().any(|dir| resolved.starts_with(dir)) {
        return Err(refused());
    }
    // A directory is listed with its links followed (so is a glob's): every file it reaches
    // must be inside too, or `/allowed/*/x.csv` would read through a link `/allowed/l -> /etc`.
    if resolved.is_dir()
        && let Some(out) = escaping_file(&resolved, &dirs)?
    {
        return Err(SqlError::Refused(format!(
            "LOCATION {location:?} reaches {} through a link, outside [sql] external_paths",
            out.display()
        )));
    }
    Ok(())
}

/// Entries a directory check walks at most: a location holding more is refused rather than
/// checked in part.
const MAX_CHECKED: usize = 100_000;

/// A file or directory under `dir` (links followed, as a listing follows them) that resolves
/// outside every one of `allowed`, if any.
fn escaping_file(dir: &Path, allowed: &[PathBuf]) -> Result<Option<PathBuf>, SqlError> {
    let mut pending = vec![dir.to_path_buf()];
    let mut seen = 0usize;
    while let Some(d) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for entry in entries.flatten() {
            seen += 1;
            if seen > MAX_CHECKED {
                return Err(SqlError::Refused(format!(
                    "{} holds more than {MAX_CHECKED} files and directories: name a narrower LOCATION",
                    dir.display()
                )));
            }
            let Ok(real) = entry.path().canonicalize() else { continue };
            if !allowed.iter().any(|a| real.starts_with(a)) {
                return Ok(Some(entry.path()));
            }
            // A link to a directory inside is walked where it leads; one already walked
            // (a cycle) ends at the count above at worst.
            if real.is_dir() {
                pending.push(real);
            }
        }
    }
    Ok(None)
}

/// The leading components of `path` that hold no glob pattern (`*`, `?`, `[`), as DataFusion
/// splits a listing location.
fn before_pattern(path: &Path) -> PathBuf {
    path.components().take_while(|c| !c.as_os_str().to_string_lossy().contains(['*', '?', '['])).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_paths_are_judged_as_written_and_as_resolved() {
        let root = tempfile::tempdir().unwrap();
        let (allowed, outside) = (root.path().join("allowed"), root.path().join("outside"));
        std::fs::create_dir_all(allowed.join("year=2026")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(allowed.join("a.csv"), "x\n1\n").unwrap();
        std::fs::write(outside.join("secret.csv"), "x\n1\n").unwrap();
        std::os::unix::fs::symlink(&outside, allowed.join("link")).unwrap();
        let dirs = vec![allowed.clone()];
        let at = |p: &Path| p.to_str().unwrap().to_string();

        check_location(&at(&allowed.join("a.csv")), &dirs).unwrap();
        // Before its pattern this glob is the allowed directory itself, which holds the link.
        check_location(&at(&allowed.join("year=*/*.parquet")), &dirs).unwrap_err();
        check_location(&at(&allowed.join("year=2026/*.parquet")), &dirs).unwrap();
        check_location(&format!("file://{}", at(&allowed.join("year=2026"))), &dirs).unwrap();
        check_location("s3://bucket/history/", &dirs).unwrap();

        let escape = check_location(&at(&allowed.join("link/secret.csv")), &dirs).unwrap_err();
        assert!(matches!(escape, SqlError::Refused(_)), "a link out of the directory: {escape}");
        let escape = check_location(&at(&allowed.join("link/*.csv")), &dirs).unwrap_err();
        assert!(matches!(escape, SqlError::Refused(_)), "{escape}");
        // A glob or a directory whose listing would follow the link.
        for through in [at(&allowed.join("*/secret.csv")), at(&allowed.join("lin?/secret.csv")), at(&allowed)]
        {
            let escape = check_location(&through, &dirs).unwrap_err();
            assert!(escape.to_string().contains("through a link"), "{through}: {escape}");
        }
        let escape = check_location(&format!("file://{}/*", at(&allowed.join("link"))), &dirs).unwrap_err();
        assert!(matches!(escape, SqlError::Refused(_) | SqlError::Invalid(_)), "{escape}");
        let dotdot = format!("{}/../outside/secret.csv", at(&allowed));
        assert!(matches!(check_location(&dotdot, &dirs), Err(SqlError::Refused(_))));
        assert!(matches!(check_location(&at(&outside.join("secret.csv")), &dirs), Err(SqlError::Refused(_))));
        assert!(matches!(check_location("a.csv", &dirs), Err(SqlError::Refused(_))), "relative");
        assert!(matches!(check_location(&at(&allowed.join("a.csv")), &[]), Err(SqlError::Refused(_))));
        assert!(matches!(check_location("http://host/a.csv", &dirs), Err(SqlError::Invalid(_))));
        let missing = check_location(&at(&allowed.join("none.csv")), &dirs).unwrap_err();
        assert!(missing.to_string().contains("not a file or directory"), "{missing}");
    }

    #[test]
    fn an_allowed_directory_reached_through_a_link_is_still_allowed() {
        let root = tempfile::tempdir().unwrap();
        let real = root.path().join("real");
        std::fs::create_dir_all(&real).unwrap();
        std::fs::write(real.join("a.csv"), "x\n1\n").unwrap();
        std::os::unix::fs::symlink(&real, root.path().join("configured")).unwrap();
        let dirs = vec![root.path().join("configured")];
        check_location(root.path().join("configured/a.csv").to_str().unwrap(), &dirs).unwrap();
    }
}
