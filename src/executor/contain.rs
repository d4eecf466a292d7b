//! Trial containment: nothing a trial starts outlives it. Each attempt of a local trial runs in
//! a box of its own, and the attempt is over only when the box is empty.
//!
//! Two kinds of box, picked once per daemon ([`Containment::detect`]):
//!
//! - **cgroup** (where the machine offers a writable cgroup v2 hierarchy: under systemd with
//!   `Delegate=yes`, or as root): the trial's first process joins a fresh sub-cgroup of the
//!   daemon's own before it runs the trial's program (a write to `cgroup.procs` before its
//!   exec, see [`super::spawn`]), so every process it ever starts is in that cgroup, whatever session, process
//!   group or environment it moves to. The end is `cgroup.kill` (SIGKILL to every member, as
//!   one kernel operation a forking process cannot outrun), then waiting until the cgroup is
//!   empty, then `rmdir`.
//! - **subreaper** (everywhere else): the daemon is a child subreaper (`PR_SET_CHILD_SUBREAPER`)
//!   and so is each trial's first process, so an orphaned descendant is re-parented to the
//!   trial (or, once the trial's first process is gone, to the daemon) instead of to init. The
//!   box follows the trial's process tree in `/proc` (parent links and the trial's process
//!   group) every [`TRACK_INTERVAL`] and at the end; the end is SIGKILL to every process found,
//!   repeated until none is left, and the daemon reaps the zombies of the ones it adopted.
//!
//! Either way the box records what it holds in the trial's directory (`contain.N`: the cgroup's
//! path, or `pid starttime` lines), so that a daemon that was killed can end the leftovers of
//! its interrupted attempts on its next start ([`reap_recorded`]) by what it recorded, not by
//! anything the trial could change.
//!
//! **Starting a trial costs the same at any daemon size.** Joining the box must happen in the
//! trial's first process before it runs the trial's program; [`super::spawn`] does it between
//! a `clone(CLONE_VM | CLONE_VFORK)` and the `execve`, so the daemon is never forked (no copy
//! of its page tables) and the program is the only thing `exec`ed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// How often the subreaper box looks for new processes of a running trial.
pub const TRACK_INTERVAL: Duration = Duration::from_millis(100);

/// How long the end of an attempt waits for its last process to go before it gives up and
/// reports the attempt over anyway (a process in uninterruptible sleep, e.g. on a dead NFS
/// mount, cannot be killed; the log says so).
const DRAIN_LIMIT: Duration = Duration::from_secs(30);

/// Which kind of box the daemon config asks for (`containment = "auto"|"cgroup"|"subreaper"`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContainmentMode {
    /// A cgroup where the machine offers one, else the subreaper.
    #[default]
    Auto,
    /// A cgroup, or the daemon does not start.
    Cgroup,
    /// The subreaper, even where cgroups are available.
    Subreaper,
}

static CONFIGURED: OnceLock<ContainmentMode> = OnceLock::new();

/// Sets the mode the next [`Containment::current`] uses (the daemon config's `containment`);
/// only the first call counts. Without a call, `QUANTUNE_CONTAINMENT` (same words) or `auto`.
pub fn configure(mode: ContainmentMode) {
    let _ = CONFIGURED.set(mode);
}

fn configured() -> ContainmentMode {
    if let Some(m) = CONFIGURED.get() {
        return *m;
    }
    match std::env::var("QUANTUNE_CONTAINMENT").as_deref() {
        Ok("cgroup") => ContainmentMode::Cgroup,
        Ok("subreaper") => ContainmentMode::Subreaper,
        _ => ContainmentMode::Auto,
    }
}

/// The daemon's way of containing trials, shared by every attempt.
#[derive(Debug)]
pub struct Containment {
    /// The daemon's own cgroup (trial cgroups are made under it), or `None`: subreaper.
    cgroup_root: Option<PathBuf>,
    /// Subreaper mode: the processes each running attempt is known to hold, by its box id, so
    /// that an adopted orphan is given to no more than one attempt.
    claimed: Mutex<HashMap<u64, HashSet<i32>>>,
    /// The next box id.
    next_id: Mutex<u64>,
    /// Held from a trial's spawn until its first process is claimed, and by every look for
    /// orphans: a first process just started is never taken for another trial's orphan.
    spawning: Mutex<()>,
    /// The last look at `/proc`, shared by the boxes that look within [`TABLE_REUSE`] of it
    /// (one scan per tick, however many trials run).
    table: Mutex<Option<(std::time::Instant, Arc<ProcessTable>)>>,
}

/// What `/proc` says about every process, by pid.
type ProcessTable = HashMap<i32, Stat>;

/// How long one scan of `/proc` serves every box.
const TABLE_REUSE: Duration = Duration::from_millis(50);

static CURRENT: OnceLock<Result<Arc<Containment>, String>> = OnceLock::new();

impl Containment {
    /// The process-wide containment, detected on first use from the configured mode (see
    /// [`configure`]). An error only when `cgroup` was asked for and is not available.
    pub fn current() -> Result<Arc<Containment>, String> {
        CURRENT
            .get_or_init(|| Containment::detect(configured()).map(Arc::new))
            .clone()
    }

    /// Picks the kind of box for `mode`; in subreaper mode makes this process a subreaper.
    pub fn detect(mode: ContainmentMode) -> Result<Containment, String> {
        let cgroup_root = match mode {
            ContainmentMode::Subreaper => None,
            ContainmentMode::Auto => match probe_cgroup() {
                Ok(root) => Some(root),
                Err(why) => {
                    tracing::info!("trials are contained by a child subreaper ({why})");
                    None
                }
            },
            ContainmentMode::Cgroup => Some(probe_cgroup().map_err(|why| {
                format!("containment = \"cgroup\": {why}; use \"auto\" or \"subreaper\" on this machine")
            })?),
        };
        match &cgroup_root {
            Some(root) => tracing::info!(
                "trials are contained by a cgroup each, under {}",
                root.display()
            ),
            None => {
                // SAFETY: prctl with integer arguments only.
                if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
                    return Err(format!(
                        "cannot make the daemon a child subreaper: {}",
                        std::io::Error::last_os_error()
                    ));
                }
            }
        }
        Ok(Containment {
            cgroup_root,
            claimed: Mutex::default(),
            next_id: Mutex::new(0),
            spawning: Mutex::new(()),
            table: Mutex::new(None),
        })
    }

    /// The process table, scanned at most every [`TABLE_REUSE`]; `fresh` forces a new scan.
    fn table(&self, fresh: bool) -> Arc<ProcessTable> {
        let mut cached = self.table.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, t)) = cached.as_ref() {
            if !fresh && at.elapsed() < TABLE_REUSE {
                return t.clone();
            }
        }
        let t = Arc::new(process_table());
        *cached = Some((std::time::Instant::now(), t.clone()));
        t
    }

    /// `"cgroup"` or `"subreaper"`.
    pub fn kind(&self) -> &'static str {
        if self.cgroup_root.is_some() {
            "cgroup"
        } else {
            "subreaper"
        }
    }

    /// A new, empty box for attempt `attempt` whose files live in `run_dir`.
    pub fn open_box(self: &Arc<Self>, run_dir: &Path, attempt: u32) -> std::io::Result<TrialBox> {
        let id = {
            let mut n = self.next_id.lock().unwrap_or_else(|p| p.into_inner());
            *n += 1;
            *n
        };
        // The record is for the crash reaper only: a trial still runs, contained, without it
        // (on a full disk, say).
        let record = record_path(run_dir, attempt);
        let mut file = match std::fs::File::create(&record) {
            Ok(f) => Some(f),
            Err(e) => {
                tracing::warn!(
                    "cannot write {} ({e}); should the daemon be killed, this attempt's leftovers are not found on the next start",
                    record.display()
                );
                None
            }
        };
        let (cgroup, procs) = match &self.cgroup_root {
            Some(root) => {
                let dir = root.join(cgroup_name(run_dir, attempt));
                // A leftover of the same attempt (a crash between start and reap) goes first.
                if dir.exists() {
                    kill_cgroup(&dir);
                }
                std::fs::create_dir(&dir).or_else(|e| {
                    if e.kind() == std::io::ErrorKind::AlreadyExists {
                        Ok(())
                    } else {
                        Err(e)
                    }
                })?;
                if let Some(f) = file.as_mut() {
                    let _ = writeln!(f, "cgroup {}", dir.display());
                }
                // The first process writes to it between clone and exec.
                let procs = OwnedFd::from(
                    std::fs::OpenOptions::new()
                        .write(true)
                        .open(dir.join("cgroup.procs"))?,
                );
                (Some(dir), Some(procs))
            }
            None => {
                self.claimed
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(id, HashSet::new());
                (None, None)
            }
        };
        Ok(TrialBox {
            owner: self.clone(),
            id,
            cgroup,
            procs,
            record: file,
            leader: None,
            known: BTreeMap::new(),
        })
    }
}

/// One attempt's box (see the module doc). Dropping it does not empty it: call
/// [`TrialBox::kill_all`].
pub struct TrialBox {
    /// The containment it belongs to.
    owner: Arc<Containment>,
    /// Its id among the running boxes.
    id: u64,
    /// Its cgroup, in cgroup mode.
    cgroup: Option<PathBuf>,
    /// The cgroup's `cgroup.procs`, open for the trial's first process to join between clone
    /// and exec (until it is spawned).
    procs: Option<OwnedFd>,
    /// `contain.N` in the trial directory, for the crash reaper (`None` if it could not be
    /// created).
    record: Option<std::fs::File>,
    /// The trial's first process.
    leader: Option<i32>,
    /// Subreaper mode: processes known to be the trial's, pid → start time (so that a reused
    /// pid is never mistaken for one of them).
    known: BTreeMap<i32, u64>,
}

impl TrialBox {
    /// Starts `program` (a path that needs no PATH search) with `argv` in `cwd`, with `env`
    /// added to the daemon's environment, as the trial's first process: in a process group of
    /// its own, inside the box — in the cgroup, or a subreaper itself (so that its orphans
    /// stay in its tree) — before the program runs. Once per box.
    pub fn spawn(
        &mut self,
        program: &Path,
        argv: &[String],
        env: Vec<(std::ffi::OsString, std::ffi::OsString)>,
        cwd: &Path,
    ) -> std::io::Result<super::spawn::Process> {
        let owner = self.owner.clone();
        let _spawning = owner.spawning.lock().unwrap_or_else(|p| p.into_inner());
        let join = match self.procs.take() {
            Some(fd) => super::spawn::Join::Cgroup(fd),
            None if self.cgroup.is_some() => {
                return Err(std::io::Error::other("this box has already been used"))
            }
            None => super::spawn::Join::Subreaper,
        };
        let child = super::spawn::spawn(super::spawn::Request {
            program,
            argv,
            env,
            cwd,
            join,
        })?;
        {
            let pid = child.pid;
            self.leader = Some(pid);
            if self.cgroup.is_none() {
                if let Some(st) = read_stat(pid) {
                    self.note(pid, st.start);
                }
                if let Some(set) = owner
                    .claimed
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get_mut(&self.id)
                {
                    set.insert(pid);
                }
            }
        }
        Ok(child)
    }

    /// Subreaper mode: looks for processes the trial started since the last look (a no-op
    /// for a cgroup, which the kernel keeps).
    pub fn track(&mut self) {
        self.look(false);
    }

    /// [`TrialBox::track`], on a fresh scan when `fresh` (the end of the attempt).
    fn look(&mut self, fresh: bool) {
        if self.cgroup.is_some() {
            return;
        }
        let owner = self.owner.clone();
        let _spawning = owner.spawning.lock().unwrap_or_else(|p| p.into_inner());
        let table = owner.table(fresh);
        let me = std::process::id() as i32;
        let own_group = nix::unistd::getpgrp().as_raw();
        let leader = self.leader;
        let mut claimed = self.owner.claimed.lock().unwrap_or_else(|p| p.into_inner());
        let others: HashSet<i32> = claimed
            .iter()
            .filter(|(id, _)| **id != self.id)
            .flat_map(|(_, s)| s.iter().copied())
            .collect();
        let mut added = Vec::new();
        for (pid, st) in table.iter() {
            // An adopted orphan that died before anyone claimed it: reap it (nobody else
            // will, and a zombie holds its pid).
            if st.state == 'Z'
                && st.ppid == me
                && st.pgrp != own_group
                && !others.contains(pid)
                && Some(*pid) != leader
            {
                // SAFETY: waitpid on a specific pid this daemon adopted.
                unsafe {
                    libc::waitpid(*pid, std::ptr::null_mut(), libc::WNOHANG);
                }
            }
        }
        loop {
            let mut grew = false;
            for (pid, st) in table.iter() {
                if st.state == 'Z'
                    || st.state == 'X'
                    || self.known.get(pid) == Some(&st.start)
                    || others.contains(pid)
                {
                    continue;
                }
                let parent_known = self
                    .known
                    .get(&st.ppid)
                    .is_some_and(|s| table.get(&st.ppid).is_some_and(|p| p.start == *s));
                let in_group = leader.is_some_and(|l| st.pgrp == l);
                // An orphan the daemon adopted, in a group of its own (the daemon's own
                // children stay in its group): left by a trial whose first process is gone.
                let adopted = st.ppid == me && st.pgrp != own_group && Some(*pid) != leader;
                if parent_known || in_group || adopted {
                    self.known.insert(*pid, st.start);
                    added.push((*pid, st.start));
                    grew = true;
                }
            }
            if !grew {
                break;
            }
        }
        if let Some(set) = claimed.get_mut(&self.id) {
            set.extend(added.iter().map(|(p, _)| *p));
        }
        drop(claimed);
        for (pid, start) in added {
            self.note(pid, start);
        }
    }

    /// Sends `sig` once to every process in the box: to the first process's group (which
    /// also reaches children forked since the last scan), then to each member that left that
    /// group. Once, because a trial may read a second SIGTERM as "stop now" (the Python
    /// package's `should_prune` does), so a process must not get it twice.
    pub fn signal_all(&mut self, sig: nix::sys::signal::Signal) {
        if let Some(l) = self.leader {
            let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(l), sig);
        }
        let members: Vec<(i32, Option<i32>)> = self
            .members()
            .into_iter()
            .map(|pid| (pid, read_stat(pid).map(|st| st.pgrp)))
            .collect();
        for pid in outside_group(self.leader, &members) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
        }
    }

    /// Kills everything in the box and waits until its last process is gone (the daemon's
    /// own child, the first process, is reaped by its waiter, not here).
    pub async fn kill_all(&mut self) {
        let start = std::time::Instant::now();
        let mut backoff = Duration::from_millis(5);
        loop {
            if let Some(dir) = &self.cgroup {
                if !cgroup_populated(dir) {
                    let _ = std::fs::remove_dir(dir);
                    break;
                }
                let _ = std::fs::write(dir.join("cgroup.kill"), "1");
                for pid in cgroup_pids(dir) {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            } else {
                self.look(true);
                let live = self.live();
                if live.is_empty() {
                    break;
                }
                for pid in live {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
            if start.elapsed() > DRAIN_LIMIT {
                tracing::error!(
                    "processes of a trial survive SIGKILL for {DRAIN_LIMIT:?} (uninterruptible sleep?); giving up on them"
                );
                break;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(100));
        }
    }

    /// Processes in the box now.
    fn members(&mut self) -> Vec<i32> {
        match &self.cgroup {
            Some(dir) => cgroup_pids(dir),
            None => {
                self.look(true);
                self.live()
            }
        }
    }

    /// Subreaper mode: known processes still alive; reaps the zombies this daemon adopted.
    fn live(&mut self) -> Vec<i32> {
        let me = std::process::id() as i32;
        let mut live = Vec::new();
        let mut gone = Vec::new();
        for (&pid, &start) in &self.known {
            match read_stat(pid) {
                Some(st) if st.start == start => {
                    if st.state == 'Z' || st.state == 'X' {
                        // The first process is the waiter's to reap; an adopted one is ours.
                        if st.ppid == me && Some(pid) != self.leader {
                            // SAFETY: waitpid on a specific pid this daemon adopted.
                            unsafe {
                                libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG);
                            }
                        }
                        gone.push(pid);
                    } else {
                        live.push(pid);
                    }
                }
                _ => gone.push(pid),
            }
        }
        for pid in gone {
            if Some(pid) != self.leader {
                self.known.remove(&pid);
            }
        }
        live
    }

    /// Records `pid` for the crash reaper.
    fn note(&mut self, pid: i32, start: u64) {
        self.known.insert(pid, start);
        if let Some(f) = self.record.as_mut() {
            let _ = writeln!(f, "{pid} {start}");
        }
    }
}

impl Drop for TrialBox {
    fn drop(&mut self) {
        self.owner
            .claimed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
    }
}

/// The crash reaper: ends whatever is left of attempt `attempt` whose box recorded itself in
/// `run_dir` (its cgroup, or its processes: those recorded with the same start time, and
/// their descendants and process groups). Returns how many processes it killed.
pub fn reap_recorded(run_dir: &Path, attempt: u32) -> usize {
    let Ok(text) = std::fs::read_to_string(record_path(run_dir, attempt)) else {
        return 0;
    };
    let mut killed = 0;
    let mut pids: BTreeMap<i32, u64> = BTreeMap::new();
    for line in text.lines() {
        if let Some(dir) = line.strip_prefix("cgroup ") {
            let dir = Path::new(dir);
            if dir.exists() {
                killed += cgroup_pids(dir).len();
                kill_cgroup(dir);
            }
        } else if let Some((p, s)) = line.split_once(' ') {
            if let (Ok(p), Ok(s)) = (p.parse(), s.parse()) {
                pids.insert(p, s);
            }
        }
    }
    if pids.is_empty() {
        return killed;
    }
    let mut table = process_table();
    table.retain(|_, st| st.state != 'Z' && st.state != 'X');
    let mut doomed: HashSet<i32> = table
        .iter()
        .filter(|(pid, st)| pids.get(pid) == Some(&st.start))
        .map(|(pid, _)| *pid)
        .collect();
    let groups: HashSet<i32> = doomed.clone();
    loop {
        let before = doomed.len();
        for (pid, st) in &table {
            if doomed.contains(&st.ppid) || groups.contains(&st.pgrp) {
                doomed.insert(*pid);
            }
        }
        if doomed.len() == before {
            break;
        }
    }
    for pid in &doomed {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(*pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    killed + doomed.len()
}

/// Where a box records itself.
fn record_path(run_dir: &Path, attempt: u32) -> PathBuf {
    run_dir.join(format!("contain.{attempt}"))
}

/// A cgroup name unique to this trial directory and attempt, stable across restarts.
fn cgroup_name(run_dir: &Path, attempt: u32) -> String {
    use sha2::Digest;
    use std::os::unix::ffi::OsStrExt;
    let digest = sha2::Sha256::digest(run_dir.as_os_str().as_bytes());
    let hex: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    format!("quantune-trial-{hex}-{attempt}")
}

/// Finds the daemon's own cgroup v2 directory and checks that a trial can be put in a child
/// of it; the error says why not.
fn probe_cgroup() -> Result<PathBuf, String> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| format!("cannot read /proc/self/mountinfo: {e}"))?;
    // "id parent maj:min root mount-point options … - fstype source super-options"
    let mount = mountinfo
        .lines()
        .find_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            (right.split_whitespace().next()? == "cgroup2")
                .then(|| left.split_whitespace().nth(4).map(PathBuf::from))
                .flatten()
        })
        .ok_or("no cgroup v2 hierarchy is mounted")?;
    let own = std::fs::read_to_string("/proc/self/cgroup")
        .map_err(|e| format!("cannot read /proc/self/cgroup: {e}"))?;
    let rel = own
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .ok_or("this process is in no cgroup v2 group")?;
    let root = mount.join(rel.trim_start_matches('/'));
    let probe = root.join(format!("quantune-probe-{}", std::process::id()));
    std::fs::create_dir(&probe).map_err(|e| {
        format!(
            "cannot create a cgroup under {} ({e}; under systemd the unit needs Delegate=yes)",
            root.display()
        )
    })?;
    let result = (|| {
        if !probe.join("cgroup.kill").exists() {
            return Err("the kernel has no cgroup.kill (Linux 5.14 or later needed)".to_string());
        }
        let procs = std::fs::OpenOptions::new()
            .write(true)
            .open(probe.join("cgroup.procs"))
            .map_err(|e| format!("cannot open {}: {e}", probe.join("cgroup.procs").display()))?;
        let fd = procs.as_raw_fd();
        let mut cmd = std::process::Command::new("/bin/sh");
        cmd.args(["-c", ":"]);
        use std::os::unix::process::CommandExt;
        // SAFETY: as in `TrialBox::configure`: one write on a descriptor opened before fork.
        unsafe {
            cmd.pre_exec(move || {
                if libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let status = cmd.status().map_err(|e| {
            format!(
                "cannot move a process into a cgroup under {} ({e})",
                root.display()
            )
        })?;
        if !status.success() {
            return Err(format!("a probe process in {} failed", probe.display()));
        }
        Ok(())
    })();
    // The probe process is gone; its cgroup may take a moment to be empty.
    for _ in 0..100 {
        if std::fs::remove_dir(&probe).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    result.map(|_| root)
}

/// Whether the cgroup still has processes.
fn cgroup_populated(dir: &Path) -> bool {
    match std::fs::read_to_string(dir.join("cgroup.events")) {
        Ok(ev) => ev.lines().any(|l| l == "populated 1"),
        Err(_) => false,
    }
}

/// The processes in the cgroup.
fn cgroup_pids(dir: &Path) -> Vec<i32> {
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .map(|t| t.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default()
}

/// Kills a cgroup's processes and removes it (waits up to 2 s for it to empty).
fn kill_cgroup(dir: &Path) {
    for _ in 0..200 {
        if !cgroup_populated(dir) {
            break;
        }
        let _ = std::fs::write(dir.join("cgroup.kill"), "1");
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = std::fs::remove_dir(dir);
}

/// What `/proc/PID/stat` says about a process.
#[derive(Clone, Copy, Debug)]
struct Stat {
    /// State letter (R, S, D, Z, …).
    state: char,
    /// Parent pid.
    ppid: i32,
    /// Process group.
    pgrp: i32,
    /// Start time in clock ticks since boot.
    start: u64,
}

fn parse_stat(stat: &str) -> Option<Stat> {
    // "pid (comm) state ppid pgrp session tty tpgid flags … starttime(22)": comm may hold
    // spaces and parentheses, so count from the last ')'.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(Stat {
        state: f.first()?.chars().next()?,
        ppid: f.get(1)?.parse().ok()?,
        pgrp: f.get(2)?.parse().ok()?,
        start: f.get(19)?.parse().ok()?,
    })
}

/// The members (pid, process group if known) that a signal to `leader`'s group misses: those in
/// another group, and any whose group could not be read (better a second signal than none).
fn outside_group(leader: Option<i32>, members: &[(i32, Option<i32>)]) -> Vec<i32> {
    members
        .iter()
        .filter(|(_, pgrp)| leader.is_none() || *pgrp != leader)
        .map(|(pid, _)| *pid)
        .collect()
}

fn read_stat(pid: i32) -> Option<Stat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Every process on the machine that this user can see (zombies included).
fn process_table() -> HashMap<i32, Stat> {
    let mut out = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if let Some(st) = read_stat(pid) {
            out.insert(pid, st);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_command_names() {
        let s = "42 (a) b (c)) S 7 42 42 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 123456 1000 10";
        let st = parse_stat(s).unwrap();
        assert_eq!((st.state, st.ppid, st.pgrp, st.start), ('S', 7, 42, 123456));
        let me = read_stat(std::process::id() as i32).unwrap();
        assert_eq!(me.ppid, nix::unistd::getppid().as_raw());
    }

    #[test]
    fn a_signal_reaches_each_member_once() {
        // Leader 10's group gets one killpg; 11 is in it, 12 left it, 13's group is unknown.
        let members = [(10, Some(10)), (11, Some(10)), (12, Some(12)), (13, None)];
        assert_eq!(outside_group(Some(10), &members), vec![12, 13]);
        // Without a leader (its group never made) every member is signalled directly.
        assert_eq!(outside_group(None, &members), vec![10, 11, 12, 13]);
    }

    #[test]
    fn cgroup_names_are_stable_and_distinct() {
        let a = cgroup_name(Path::new("/s/trials/x/1"), 1);
        assert_eq!(a, cgroup_name(Path::new("/s/trials/x/1"), 1));
        assert_ne!(a, cgroup_name(Path::new("/s/trials/x/2"), 1));
        assert_ne!(a, cgroup_name(Path::new("/s/trials/x/1"), 2));
        assert!(a.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    }
}
