//! Secret files (bearer tokens, webhook keys): read only when they are regular files that
//! their owner alone can read, owned by this process's user or root. Their contents are never
//! logged; errors name the config key and the file.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Reads the secret file `path`, configured under the key `key` (e.g. `tcp.token_file`),
/// refusing one that is not a regular file, that group or others can read, or that belongs to
/// another user (it could be swapped under us).
pub fn read(key: &str, path: &Path) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{key} {}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!("{key} {} is not a regular file", path.display()));
    }
    let mode = meta.mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "{key} {} has mode {mode:04o}; it holds a secret and must be readable by its owner only (chmod 600 {})",
            path.display(),
            path.display()
        ));
    }
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me && meta.uid() != 0 {
        return Err(format!(
            "{key} {} belongs to uid {}; it must belong to this user (uid {me}) or root",
            path.display(),
            meta.uid()
        ));
    }
    std::fs::read_to_string(path).map_err(|e| format!("{key} {}: {e}", path.display()))
}
