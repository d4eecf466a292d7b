//! Starting a trial's first process without copying the daemon and without a second `exec`.
//!
//! The first process must enter its box (join a cgroup, or become a child subreaper) before it
//! runs the trial's program. The standard library can only do that with a `pre_exec` hook,
//! which makes it `fork` — copying the page tables of the whole daemon, so that starting a
//! trial costs more the more the daemon holds. `posix_spawn` copies nothing but has no hook,
//! and a trampoline (spawn a small program that enters the box, then `exec`s the trial's) costs
//! a second `exec` per trial. So this module does what `posix_spawn` does, with the hook:
//! `clone(CLONE_VM | CLONE_VFORK)` onto a stack of its own, and in the child only
//! async-signal-safe system calls on memory prepared before the clone — process group, box,
//! standard streams, working directory, signal mask — then `execve`. The parent is suspended
//! until the child has `exec`ed (or failed to), so the prepared memory outlives the child's use
//! of it; a failure before `execve` is reported through that shared memory.
//!
//! The process is waited for through a pidfd, and its stdout and stderr come back as tokio
//! pipes; nothing here touches tokio's own child handling.

use std::ffi::{CString, OsStr, OsString};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::ExitStatus;
use tokio::io::unix::AsyncFd;
use tokio::net::unix::pipe;

/// How the first process enters its box.
pub enum Join {
    /// Writes `0` to this `cgroup.procs` (open for writing), which moves the writer.
    Cgroup(OwnedFd),
    /// Becomes a child subreaper, so that its orphans stay in its tree.
    Subreaper,
}

/// What to start.
pub struct Request<'a> {
    /// The program, as a path that needs no PATH search (see `preflight::find_program`).
    pub program: &'a Path,
    /// argv, `argv[0]` included.
    pub argv: &'a [String],
    /// Variables added to (or replacing those of) the daemon's environment.
    pub env: Vec<(OsString, OsString)>,
    /// The working directory.
    pub cwd: &'a Path,
    /// How it enters its box.
    pub join: Join,
}

/// A started process: the daemon's child, in a process group of its own.
pub struct Process {
    /// Its pid (also its process group).
    pub pid: i32,
    /// Its stdout (`None` once taken).
    pub stdout: Option<pipe::Receiver>,
    /// Its stderr (`None` once taken).
    pub stderr: Option<pipe::Receiver>,
    pidfd: AsyncFd<OwnedFd>,
    status: Option<ExitStatus>,
}

impl Process {
    /// Waits for it to exit and reaps it (once; later calls return the same status).
    pub async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        loop {
            if let Some(s) = self.try_wait()? {
                return Ok(s);
            }
            let mut ready = self.pidfd.readable().await?;
            ready.clear_ready();
        }
    }

    /// Its exit status if it has exited (reaping it), else `None`.
    pub fn try_wait(&mut self) -> std::io::Result<Option<ExitStatus>> {
        if let Some(s) = self.status {
            return Ok(Some(s));
        }
        let mut status = 0;
        // SAFETY: waitpid on our own child's pid, with a valid status pointer.
        let r = unsafe { libc::waitpid(self.pid, &mut status, libc::WNOHANG) };
        match r {
            0 => Ok(None),
            r if r == self.pid => {
                let s = ExitStatus::from_raw(status);
                self.status = Some(s);
                Ok(Some(s))
            }
            _ => Err(std::io::Error::last_os_error()),
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // A child dropped before it was waited for is reaped once it exits, by the box's
        // drain (which kills it) and this last look; a zombie never outlives the daemon.
        let _ = self.try_wait();
    }
}

/// Everything the child reads, prepared before the clone (nothing is allocated after it).
#[repr(C)]
struct ChildArgs {
    program: *const libc::c_char,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    cwd: *const libc::c_char,
    stdin: RawFd,
    stdout: RawFd,
    stderr: RawFd,
    /// `cgroup.procs`, or -1 to become a subreaper.
    procs: RawFd,
    /// Set by the child when a step before `execve` fails: (step, errno).
    failed: (libc::c_int, libc::c_int),
}

/// The steps the child reports a failure at.
const STEPS: &[&str] = &[
    "make its process group",
    "join its cgroup",
    "become a child subreaper",
    "set up its standard streams",
    "enter its working directory",
    "exec the program",
];

/// The child: async-signal-safe system calls only, on memory the suspended parent keeps.
extern "C" fn child(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` points to the parent's `ChildArgs`, alive while the parent is suspended
    // (CLONE_VFORK); every call below is a plain system call on prepared values.
    unsafe {
        let a = &mut *(arg as *mut ChildArgs);
        let fail = |a: &mut ChildArgs, step: libc::c_int| -> libc::c_int {
            a.failed = (step, *libc::__errno_location());
            127
        };
        if libc::setpgid(0, 0) != 0 {
            return fail(a, 1);
        }
        if a.procs >= 0 {
            if libc::write(a.procs, b"0".as_ptr().cast(), 1) != 1 {
                return fail(a, 2);
            }
        } else if libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0 {
            return fail(a, 3);
        }
        for (from, to) in [(a.stdin, 0), (a.stdout, 1), (a.stderr, 2)] {
            let ok = if from == to {
                // dup2 onto itself keeps close-on-exec: clear it instead.
                libc::fcntl(to, libc::F_SETFD, 0) == 0
            } else {
                libc::dup2(from, to) == to
            };
            if !ok {
                return fail(a, 4);
            }
        }
        if libc::chdir(a.cwd) != 0 {
            return fail(a, 5);
        }
        // The daemon's handlers run in the daemon's memory, which this child shares: reset
        // every caught signal to its default before unblocking, as posix_spawn does, so that
        // a signal arriving before the exec cannot run one here (tokio's would tell the daemon
        // it got the signal). SIGPIPE, which the daemon ignores (as Rust programs do), too.
        for sig in 1..libc::SIGRTMAX() {
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(sig, std::ptr::null(), &mut old) == 0
                && old.sa_sigaction != libc::SIG_DFL
                && (old.sa_sigaction != libc::SIG_IGN || sig == libc::SIGPIPE)
            {
                let mut dfl: libc::sigaction = std::mem::zeroed();
                dfl.sa_sigaction = libc::SIG_DFL;
                libc::sigaction(sig, &dfl, std::ptr::null_mut());
            }
        }
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
        libc::execve(a.program, a.argv, a.envp);
        fail(a, 6)
    }
}

fn cstring(s: &OsStr) -> std::io::Result<CString> {
    CString::new(s.as_bytes()).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{s:?} contains a NUL byte"),
        )
    })
}

/// A pipe: (read end for the daemon, write end for the child), both close-on-exec.
fn pipe_pair() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two descriptors this function then owns.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both were just created and are owned by nothing else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// The child's stack. With CLONE_VM it runs in the daemon's memory, on this.
const STACK: usize = 64 << 10;

/// The daemon's environment, read once: every trial starts from it (the daemon never changes
/// its own environment once it runs).
fn daemon_env() -> &'static std::collections::BTreeMap<OsString, OsString> {
    static ENV: std::sync::OnceLock<std::collections::BTreeMap<OsString, OsString>> =
        std::sync::OnceLock::new();
    ENV.get_or_init(|| std::env::vars_os().collect())
}

/// Starts `req` (see the module doc). Must be called inside a tokio runtime.
pub fn spawn(req: Request<'_>) -> std::io::Result<Process> {
    let program = cstring(req.program.as_os_str())?;
    let argv: Vec<CString> = req
        .argv
        .iter()
        .map(|a| cstring(OsStr::new(a)))
        .collect::<Result<_, _>>()?;
    let mut env = daemon_env().clone();
    env.extend(req.env);
    let envp: Vec<CString> = env
        .iter()
        .map(|(k, v)| {
            let mut kv = k.clone();
            kv.push("=");
            kv.push(v);
            cstring(&kv)
        })
        .collect::<Result<_, _>>()?;
    let cwd = cstring(req.cwd.as_os_str())?;
    let argv_p: Vec<*const libc::c_char> = argv
        .iter()
        .map(|c| c.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let envp_p: Vec<*const libc::c_char> = envp
        .iter()
        .map(|c| c.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let stdin = OwnedFd::from(std::fs::File::open("/dev/null")?);
    let (out_r, out_w) = pipe_pair()?;
    let (err_r, err_w) = pipe_pair()?;
    let procs = match &req.join {
        Join::Cgroup(fd) => fd.as_raw_fd(),
        Join::Subreaper => -1,
    };
    let mut args = ChildArgs {
        program: program.as_ptr(),
        argv: argv_p.as_ptr(),
        envp: envp_p.as_ptr(),
        cwd: cwd.as_ptr(),
        stdin: stdin.as_raw_fd(),
        stdout: out_w.as_raw_fd(),
        stderr: err_w.as_raw_fd(),
        procs,
        failed: (0, 0),
    };
    // Allocated, not zeroed: only the child writes it, as its stack.
    let mut stack: Vec<u8> = Vec::with_capacity(STACK);
    // SAFETY: the stack top is one past the allocation, aligned down to 16 bytes as the ABI
    // wants; nothing reads the memory as Rust values.
    let top = unsafe { stack.as_mut_ptr().add(STACK) } as usize & !15;
    // SAFETY: sigset and mask calls on valid local sets; clone runs `child` on `stack` with
    // `args`, both alive until clone returns (CLONE_VFORK suspends this thread until the
    // child has exec'd or exited); signals stay blocked meanwhile so that no handler of the
    // daemon runs on the child's side.
    let pid = unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        let pid = libc::clone(
            child,
            top as *mut libc::c_void,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            &mut args as *mut ChildArgs as *mut libc::c_void,
        );
        let e = std::io::Error::last_os_error();
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        if pid < 0 {
            return Err(e);
        }
        pid
    };
    drop((stdin, out_w, err_w));
    if args.failed.0 != 0 {
        let mut status = 0;
        // SAFETY: reaping the child that just failed (it has exited).
        unsafe { libc::waitpid(pid, &mut status, 0) };
        let step = STEPS
            .get(args.failed.0 as usize - 1)
            .copied()
            .unwrap_or("start");
        let e = std::io::Error::from_raw_os_error(args.failed.1);
        return Err(std::io::Error::new(
            e.kind(),
            format!("the trial's first process could not {step}: {e}"),
        ));
    }
    // SAFETY: pidfd_open on our own unreaped child; the descriptor is then owned here.
    let pidfd = unsafe {
        let fd = libc::syscall(libc::SYS_pidfd_open, pid, 0) as RawFd;
        if fd < 0 {
            let e = std::io::Error::last_os_error();
            libc::kill(pid, libc::SIGKILL);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
            return Err(e);
        }
        OwnedFd::from_raw_fd(fd)
    };
    // SAFETY: the pidfd is owned by the AsyncFd for its whole life and never replaced.
    let pidfd =
        unsafe { AsyncFd::register(pidfd) }.map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(Process {
        pid,
        stdout: Some(pipe::Receiver::from_owned_fd(out_r)?),
        stderr: Some(pipe::Receiver::from_owned_fd(err_r)?),
        pidfd,
        status: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    fn req<'a>(argv: &'a [String], cwd: &'a Path) -> Request<'a> {
        Request {
            program: Path::new("/bin/sh"),
            argv,
            env: vec![("QT_SPAWN_TEST".into(), "yes".into())],
            cwd,
            join: Join::Subreaper,
        }
    }

    #[tokio::test]
    async fn runs_the_program_in_its_group_with_its_streams_env_and_directory() {
        let dir = tempfile::tempdir().unwrap();
        let argv: Vec<String> = [
            "sh",
            "-c",
            "echo \"$QT_SPAWN_TEST $(pwd) $(cut -d' ' -f5 /proc/$$/stat) $$\"; echo err >&2; \
             while read k v; do [ \"$k\" = SigBlk: ] && case $v in *[!0]*) exit 4;; *) exit 3;; esac; \
             done < /proc/self/status",
        ]
        .map(String::from)
        .to_vec();
        let mut p = spawn(req(&argv, dir.path())).unwrap();
        let (mut out, mut err) = (String::new(), String::new());
        p.stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .await
            .unwrap();
        p.stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .await
            .unwrap();
        let status = p.wait().await.unwrap();
        // Exit 3: its signal mask is empty (the daemon's blocked set did not leak), read by
        // the shell itself with builtins: a `grep` of the shell's status raced the shell's
        // own wait for it, during which dash blocks every signal (exit 1 about one run in 8
        // under load).
        assert_eq!(status.code(), Some(3), "{out} {err}");
        let dir_s = dir.path().canonicalize().unwrap();
        let want = format!("yes {} {} {}\n", dir_s.display(), p.pid, p.pid);
        assert_eq!(out, want);
        assert_eq!(err, "err\n");
        assert_eq!(p.wait().await.unwrap().code(), Some(3));
    }

    #[tokio::test]
    async fn a_failure_before_exec_names_its_step() {
        let dir = tempfile::tempdir().unwrap();
        let argv = vec!["nope".to_string()];
        let mut r = req(&argv, dir.path());
        r.program = Path::new("/nonexistent/nope");
        let e = spawn(r).err().expect("no such program");
        assert!(e.to_string().contains("could not exec the program"), "{e}");
        let missing = dir.path().join("gone");
        let argv = vec!["sh".to_string()];
        let e = spawn(req(&argv, &missing))
            .err()
            .expect("no such directory");
        assert!(e.to_string().contains("enter its working directory"), "{e}");
    }
}
