//! Authentication (a users file of argon2 password hashes) and authorization (per-user
//! read/write rules on destination patterns). No sockets, no threads: the server decides where
//! the slow part (argon2) runs, which is never on a reactor.
//!
//! Users file, one user per line (`#` starts a comment), optionally with roles after a second
//! colon (comma-separated; `admin` opens the admin API):
//!
//! ```text
//! alice:$argon2id$v=19$m=19456,t=2,p=1$...
//! ops:$argon2id$v=19$m=19456,t=2,p=1$...:admin
//! ```
//!
//! ACL file, one rule per line: `<user|anonymous|*> <read|write|readwrite> <pattern>`, with the
//! subscription wildcard syntax (`/topic/chat.*`, `/topic/#`) or an exact destination. With an
//! ACL configured, what no rule allows is denied.
//!
//! ```text
//! *          read       /topic/public.#
//! alice      readwrite  /topic/chat.#
//! anonymous  write      /app/chat/lobby
//! ```

mod acl;

pub use acl::{covers, Acl, AclHandle, Perm};

use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use std::cell::RefCell;

use argon2::password_hash::{Output, PasswordHash, PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};

use crate::session::{AuthCheck, Authenticator};

/// Hash a passcode for the users file (argon2id, random salt).
pub fn hash_password(passcode: &str) -> Result<String, String> {
    let mut salt = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut salt))
        .map_err(|e| format!("no randomness for the salt: {e}"))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    Argon2::default()
        .hash_password(passcode.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// The most memory (KiB) a users-file hash may ask argon2 for by default: 64 MiB, RFC 9106's
/// second recommended setting. Each verification worker keeps one buffer this large at most.
pub const DEFAULT_MAX_HASH_MEMORY_KIB: u32 = 64 * 1024;

thread_local! {
    /// This thread's argon2 working memory, reused from one verification to the next (a
    /// fresh 19-64 MiB allocation per check left hundreds of MB behind in the allocator).
    static BLOCKS: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// The memory (KiB) a PHC hash string asks for, if it is an argon2 hash.
fn hash_memory_kib(hash: &PasswordHash<'_>) -> Option<u32> {
    Params::try_from(hash).ok().map(|p| p.m_cost())
}

/// Check `passcode` against an argon2 PHC `hash`, in this thread's reused working memory; a
/// hash asking for more than `max_kib` fails without being computed.
fn verify(passcode: &[u8], hash: &str, max_kib: u32) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return false;
    };
    let Ok(params) = Params::try_from(&parsed) else {
        return false;
    };
    if params.m_cost() > max_kib {
        return false;
    }
    let Ok(algorithm) = Algorithm::try_from(parsed.algorithm) else {
        return false;
    };
    let version = match parsed.version.map(Version::try_from).transpose() {
        Ok(v) => v.unwrap_or_default(),
        Err(_) => return false,
    };
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    let need = params.block_count();
    let argon = Argon2::new(algorithm, version, params);
    let mut out = [0u8; Output::MAX_LENGTH];
    let Some(out) = out.get_mut(..expected.len()) else {
        return false;
    };
    BLOCKS.with(|b| {
        let mut blocks = b.borrow_mut();
        if blocks.len() < need {
            blocks.resize(need, Block::default());
        }
        let Some(mem) = blocks.get_mut(..need) else {
            return false;
        };
        argon
            .hash_password_into_with_memory(passcode, salt, out, mem)
            .is_ok()
            // Output's equality is constant-time.
            && Output::new(out).is_ok_and(|computed| computed == expected)
    })
}

/// What an unknown user's passcode is checked against: a well-formed hash with
/// [`hash_password`]'s parameters that no passcode matches (its output is zeros). A constant,
/// not a hash computed at start-up, whose buffer the allocator would keep.
const DECOY: &str = "$argon2id$v=19$m=19456,t=2,p=1$c3RvbXBib3hkZWNveXNhbHQ$\
                     AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
/// The decoy's memory, KiB.
const DECOY_KIB: u32 = 19456;

/// Parse a users file's text into user -> hash. Every error names its line.
pub fn parse_users(text: &str) -> Result<HashMap<String, String>, String> {
    parse_users_within(text, u32::MAX)
}

/// [`parse_users`], refusing hashes that ask argon2 for more than `max_kib` KiB.
pub fn parse_users_within(text: &str, max_kib: u32) -> Result<HashMap<String, String>, String> {
    let mut users = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, entry) = line
            .split_once(':')
            .ok_or_else(|| format!("line {}: expected name:hash[:roles]", i + 1))?;
        // A PHC hash has no ':', so what follows a second one is the roles.
        let (hash, roles) = match entry.split_once(':') {
            Some((hash, roles)) => (hash, Some(roles)),
            None => (entry, None),
        };
        if let Some(bad) = roles.and_then(|r| r.split(',').find(|r| !valid_role(r))) {
            return Err(format!(
                "line {}: user {name}: role '{bad}' is not a name (letters, digits, '_', '-')",
                i + 1
            ));
        }
        let parsed = PasswordHash::new(hash)
            .map_err(|e| format!("line {}: user {name}: not a password hash: {e}", i + 1))?;
        match hash_memory_kib(&parsed) {
            None => return Err(format!("line {}: user {name}: not an argon2 hash", i + 1)),
            Some(m) if m > max_kib => {
                return Err(format!(
                    "line {}: user {name}: the hash asks for {m} KiB, above \
                     auth.max_hash_memory ({max_kib} KiB)",
                    i + 1
                ))
            }
            Some(_) => {}
        }
        // The map keeps the entry whole (hash, then roles): see [`hash_of`] and [`roles_of`].
        if users.insert(name.to_string(), entry.to_string()).is_some() {
            return Err(format!("line {}: user {name} listed twice", i + 1));
        }
    }
    Ok(users)
}

fn valid_role(r: &str) -> bool {
    !r.is_empty()
        && r.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The hash of a users-file entry (`hash[:roles]`).
fn hash_of(entry: &str) -> &str {
    entry.split_once(':').map_or(entry, |(h, _)| h)
}

/// The roles of a users-file entry (`hash[:roles]`).
fn roles_of(entry: &str) -> impl Iterator<Item = &str> {
    entry
        .split_once(':')
        .map_or("", |(_, r)| r)
        .split(',')
        .filter(|r| !r.is_empty())
}

/// Logins remembered as verified, so reconnecting clients skip argon2.
const CACHE_MAX: usize = 65_536;
/// Source addresses whose failures are tracked.
const FAILURES_MAX: usize = 65_536;

/// Users from a file, with an optional anonymous switch.
pub struct PasswordAuth {
    users: RwLock<HashMap<String, String>>,
    anonymous: bool,
    /// The MAC of (login, passcode) under `key` ([`PasswordAuth::key`]) for logins verified
    /// since the last reload.
    verified: Mutex<std::collections::HashSet<[u8; 32]>>,
    /// The process's random MAC key (never leaves memory).
    secret: [u8; 64],
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
    /// Bumped by every change of the users.
    generation: AtomicU64,
    /// The most argon2 memory (KiB) a hash may ask for.
    max_kib: u32,
    /// Checked for unknown users, so they cost as much as a wrong passcode.
    decoy: String,
}

impl fmt::Debug for PasswordAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordAuth")
            .field("anonymous", &self.anonymous)
            .finish_non_exhaustive()
    }
}

impl PasswordAuth {
    pub fn new(users: HashMap<String, String>, anonymous: bool) -> Self {
        let secret = random_key();
        PasswordAuth {
            users: RwLock::new(users),
            anonymous,
            verified: Mutex::new(Default::default()),
            secret,
            failures: Mutex::new(HashMap::new()),
            generation: AtomicU64::new(0),
            max_kib: DEFAULT_MAX_HASH_MEMORY_KIB,
            decoy: DECOY.to_owned(),
        }
    }

    /// Refuse hashes that ask argon2 for more than `kib` KiB (at load, and if one gets past,
    /// at verification).
    pub fn with_max_hash_memory(mut self, kib: u32) -> Self {
        self.max_kib = kib;
        if kib < DECOY_KIB {
            // Still computed (an unknown user costs a check), within the bound.
            self.decoy = DECOY.replacen(&format!("m={DECOY_KIB}"), &format!("m={kib}"), 1);
        }
        self
    }

    pub fn from_file(path: &Path, anonymous: bool, max_hash_kib: u32) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let users = parse_users_within(&text, max_hash_kib)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Self::new(users, anonymous).with_max_hash_memory(max_hash_kib))
    }

    /// Replace the users (e.g. on SIGHUP); forgets verified logins.
    pub fn reload(&self, path: &Path) -> Result<usize, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let users = parse_users_within(&text, self.max_kib)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let n = users.len();
        self.set_users(users);
        Ok(n)
    }

    /// Does `login` hold `role` in the users file?
    pub fn has_role(&self, login: &str, role: &str) -> bool {
        self.users
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(login)
            .is_some_and(|e| roles_of(e).any(|r| r == role))
    }

    /// Check a login outside STOMP (the admin API's HTTP Basic): a named user and its
    /// passcode, from the verified-login cache or with argon2 (blocking: never on a reactor).
    pub fn verify_login(&self, login: &str, passcode: &str) -> bool {
        if login.is_empty() {
            return false;
        }
        self.check(Some(login), Some(passcode), None) == AuthCheck::Allow
            || self.authenticate(Some(login), Some(passcode), None)
    }

    /// Replace the users; forgets verified logins, and live sessions of users no longer there
    /// are closed (their reactors see the generation move).
    pub fn set_users(&self, users: HashMap<String, String>) {
        *self.users.write().unwrap_or_else(|p| p.into_inner()) = users;
        self.verified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// The cache key of a login: keyed BLAKE2b-256 (a MAC, RFC 7693 §2.9) of the login's
    /// length, the login and the passcode, under the process's random key. Without the key,
    /// nothing about a passcode can be learnt or forged from the cache; the length prefix
    /// keeps `("ab", "c")` and `("a", "bc")` apart.
    fn key(&self, login: &str, passcode: &str) -> [u8; 32] {
        mac_of(&self.secret, login, passcode)
    }
}

fn mac_of(key: &[u8; 64], login: &str, passcode: &str) -> [u8; 32] {
    use blake2::digest::{consts::U32, FixedOutput, KeyInit, Update};
    let mut m = blake2::Blake2bMac::<U32>::new(key.into());
    m.update(&(login.len() as u64).to_be_bytes());
    m.update(login.as_bytes());
    m.update(passcode.as_bytes());
    m.finalize_fixed().into()
}

/// 64 random bytes from the kernel; if it cannot be read, the standard library's per-process
/// random hasher keys stretched over them (never a constant key).
fn random_key() -> [u8; 64] {
    let mut key = [0u8; 64];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut key))
        .is_err()
    {
        use std::hash::{BuildHasher, Hasher};
        for (i, chunk) in key.chunks_mut(8).enumerate() {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_usize(i);
            chunk.copy_from_slice(&h.finish().to_le_bytes());
        }
    }
    key
}

impl Authenticator for PasswordAuth {
    fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    fn admits(&self, login: Option<&str>) -> bool {
        match login.filter(|l| !l.is_empty()) {
            Some(l) => self
                .users
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .contains_key(l),
            None => self.anonymous,
        }
    }

    fn check(&self, login: Option<&str>, passcode: Option<&str>, _host: Option<&str>) -> AuthCheck {
        let Some(login) = login.filter(|l| !l.is_empty()) else {
            return if self.anonymous {
                AuthCheck::Allow
            } else {
                AuthCheck::Slow
            };
        };
        let key = self.key(login, passcode.unwrap_or(""));
        if self
            .verified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&key)
        {
            return AuthCheck::Allow;
        }
        AuthCheck::Slow
    }

    fn authenticate(
        &self,
        login: Option<&str>,
        passcode: Option<&str>,
        host: Option<&str>,
    ) -> bool {
        let _ = host;
        let Some(login) = login.filter(|l| !l.is_empty()) else {
            return self.anonymous;
        };
        let hash = self
            .users
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(login)
            .cloned();
        let pass = passcode.unwrap_or("").as_bytes();
        let ok = match hash {
            Some(h) => verify(pass, hash_of(&h), self.max_kib),
            None => {
                // Spend the same time on an unknown user as on a wrong passcode.
                let _ = verify(pass, &self.decoy, self.max_kib);
                false
            }
        };
        if ok {
            let key = self.key(login, passcode.unwrap_or(""));
            let mut v = self.verified.lock().unwrap_or_else(|p| p.into_inner());
            if v.len() >= CACHE_MAX {
                v.clear();
            }
            v.insert(key);
        }
        ok
    }

    fn failure_delay(&self, ip: Option<IpAddr>, ok: bool) -> Duration {
        let Some(ip) = ip else {
            return Duration::ZERO;
        };
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if ok {
            f.remove(&ip);
            return Duration::ZERO;
        }
        if f.len() >= FAILURES_MAX && !f.contains_key(&ip) {
            // Bounded: forget the oldest half rather than grow.
            let mut ages: Vec<Instant> = f.values().map(|(_, t)| *t).collect();
            ages.sort_unstable();
            if let Some(cut) = ages.get(ages.len() / 2).copied() {
                f.retain(|_, (_, t)| *t > cut);
            }
        }
        let e = f.entry(ip).or_insert((0, Instant::now()));
        e.0 = e.0.saturating_add(1);
        e.1 = Instant::now();
        // 0.2 s after the first failure, doubling, at most 5 s.
        Duration::from_millis((100u64 << e.0.min(6)).min(5_000))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cache key is keyed BLAKE2b-256 (RFC 7693) of the login's length, login and
    /// passcode: known-answer check against the RFC's keyed construction computed here with
    /// the streaming API in one call, and different keys give unrelated MACs.
    #[test]
    fn the_login_cache_key_is_a_keyed_blake2b_mac() {
        use blake2::digest::{consts::U32, Mac};
        let key = [7u8; 64];
        let mut whole = b"\0\0\0\0\0\0\0\x05alice".to_vec();
        whole.extend_from_slice(b"secret");
        let want = blake2::Blake2bMac::<U32>::new_from_slice(&key)
            .unwrap()
            .chain_update(&whole)
            .finalize()
            .into_bytes();
        assert_eq!(mac_of(&key, "alice", "secret").as_slice(), want.as_slice());
        assert_ne!(mac_of(&key, "ab", "c"), mac_of(&key, "a", "bc"));
        assert_ne!(
            mac_of(&key, "alice", "secret"),
            mac_of(&[8u8; 64], "alice", "secret")
        );
        // Not the old construction (SHA-1 over a secret prefix).
        assert_eq!(mac_of(&key, "alice", "secret").len(), 32);
    }

    #[test]
    fn users_file_roles_follow_the_hash() {
        let h = hash_password("secret").unwrap();
        let users = parse_users(&format!("alice:{h}\nops:{h}:admin,audit\n")).unwrap();
        let auth = PasswordAuth::new(users, false);
        assert!(auth.has_role("ops", "admin"));
        assert!(auth.has_role("ops", "audit"));
        assert!(!auth.has_role("alice", "admin"));
        assert!(!auth.has_role("nobody", "admin"));
        // The roles are not part of the hash: the passcode still verifies.
        assert!(auth.verify_login("ops", "secret"));
        assert!(!auth.verify_login("ops", "wrong"));
        assert!(!auth.verify_login("", "secret"));
        let bad = parse_users(&format!("ops:{h}:ad min\n")).unwrap_err();
        assert!(bad.contains("line 1") && bad.contains("role"), "{bad}");
        assert!(parse_users(&format!("ops:{h}:admin,\n")).is_err());
    }

    #[test]
    fn users_file_and_verification() {
        let h = hash_password("secret").unwrap();
        assert!(h.starts_with("$argon2id$"));
        let users = parse_users(&format!("# users\nalice:{h}\n\n")).unwrap();
        let auth = PasswordAuth::new(users, false);
        assert_eq!(
            auth.check(Some("alice"), Some("secret"), None),
            AuthCheck::Slow
        );
        assert!(auth.authenticate(Some("alice"), Some("secret"), None));
        // Verified once: the fast path knows it now.
        assert_eq!(
            auth.check(Some("alice"), Some("secret"), None),
            AuthCheck::Allow
        );
        assert_eq!(
            auth.check(Some("alice"), Some("guess"), None),
            AuthCheck::Slow
        );
        assert!(!auth.authenticate(Some("alice"), Some("guess"), None));
        assert!(!auth.authenticate(Some("mallory"), Some("secret"), None));
        assert!(!auth.authenticate(None, None, None), "anonymous is off");
        let anon = PasswordAuth::new(HashMap::new(), true);
        assert_eq!(anon.check(None, None, None), AuthCheck::Allow);
    }

    #[test]
    fn the_decoy_costs_what_a_real_hash_costs() {
        let real = hash_password("x").unwrap();
        let real = PasswordHash::new(&real).unwrap();
        let decoy = PasswordHash::new(DECOY).unwrap();
        assert_eq!(Params::try_from(&decoy), Params::try_from(&real));
        assert_eq!(decoy.algorithm, real.algorithm);
        assert!(!verify(b"", DECOY, u32::MAX));
        // Under a lower bound the decoy asks for what is allowed, and is still computed.
        let low = PasswordAuth::new(HashMap::new(), false).with_max_hash_memory(8192);
        let parsed = PasswordHash::new(&low.decoy).unwrap();
        assert_eq!(Params::try_from(&parsed).unwrap().m_cost(), 8192);
    }

    #[test]
    fn hashes_asking_too_much_memory_are_refused() {
        let h = hash_password("secret").unwrap();
        assert!(verify(b"secret", &h, 19456));
        assert!(
            !verify(b"secret", &h, 19455),
            "not computed above the bound"
        );
        let err = parse_users_within(&format!("alice:{h}\n"), 8192).unwrap_err();
        assert_eq!(
            err,
            "line 1: user alice: the hash asks for 19456 KiB, above auth.max_hash_memory \
             (8192 KiB)"
        );
        assert!(parse_users_within(
            "bob:$scrypt$ln=16,r=8,p=1$c2FsdHNhbHQ$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            u32::MAX
        )
        .unwrap_err()
        .contains("not an argon2 hash"));
    }

    #[test]
    fn bad_users_files_name_the_line() {
        assert_eq!(
            parse_users("alice").unwrap_err(),
            "line 1: expected name:hash[:roles]"
        );
        assert!(parse_users("\nbob:plaintext")
            .unwrap_err()
            .starts_with("line 2: user bob: not a password hash"));
    }

    #[test]
    fn failures_slow_down_per_ip_and_reset_on_success() {
        let auth = PasswordAuth::new(HashMap::new(), false);
        let ip: IpAddr = "127.0.0.9".parse().unwrap();
        let d1 = auth.failure_delay(Some(ip), false);
        let d2 = auth.failure_delay(Some(ip), false);
        assert!(d2 > d1);
        for _ in 0..20 {
            auth.failure_delay(Some(ip), false);
        }
        assert_eq!(auth.failure_delay(Some(ip), false), Duration::from_secs(5));
        assert_eq!(auth.failure_delay(Some(ip), true), Duration::ZERO);
        assert_eq!(auth.failure_delay(Some(ip), false), d1);
    }
}
