//! Password hashing (argon2id at OWASP parameters), policy, and generation.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use crate::error::IdpError;

/// OWASP Password Storage Cheat Sheet: argon2id, m = 19 MiB, t = 2, p = 1.
pub const M_COST_KIB: u32 = 19_456;
pub const T_COST: u32 = 2;
pub const P_COST: u32 = 1;

pub const MIN_LENGTH: usize = 16;

fn hasher() -> Argon2<'static> {
    // The constants are valid parameters; Params::new only fails for out-of-range values.
    let params = Params::new(M_COST_KIB, T_COST, P_COST, None).expect("valid argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// A PHC-format argon2id hash of `password` with a fresh salt.
pub fn hash(password: &str) -> Result<String, IdpError> {
    let salt_bytes = crate::util::random_bytes(16);
    let salt = SaltString::encode_b64(&salt_bytes).map_err(|e| IdpError::Hash(e.to_string()))?;
    hasher()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| IdpError::Hash(e.to_string()))
}

/// Whether `password` matches `phc`. A malformed stored hash never matches.
pub fn verify(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => hasher()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// The password policy: length ≥ 16 with upper, lower, digit and special character, and not
/// containing the username. Returns every rule broken, for one clear message.
pub fn check_policy(username: &str, password: &str) -> Result<(), IdpError> {
    let mut broken = Vec::new();
    if password.chars().count() < MIN_LENGTH {
        broken.push(format!("at least {MIN_LENGTH} characters"));
    }
    if !password.chars().any(|c| c.is_uppercase()) {
        broken.push("an upper-case letter".to_string());
    }
    if !password.chars().any(|c| c.is_lowercase()) {
        broken.push("a lower-case letter".to_string());
    }
    if !password.chars().any(|c| c.is_ascii_digit()) {
        broken.push("a digit".to_string());
    }
    if !password.chars().any(|c| !c.is_alphanumeric()) {
        broken.push("a special character".to_string());
    }
    if !username.is_empty() && password.to_lowercase().contains(&username.to_lowercase()) {
        broken.push("not containing the username".to_string());
    }
    if broken.is_empty() {
        Ok(())
    } else {
        Err(IdpError::invalid(
            "password",
            format!("must have {}", broken.join(", ")),
        ))
    }
}

/// A random 24-character password that satisfies the policy.
pub fn generate() -> String {
    const UPPER: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ";
    const LOWER: &[u8] = b"abcdefghijkmnopqrstuvwxyz";
    const DIGIT: &[u8] = b"23456789";
    const SPECIAL: &[u8] = b"!#%+-=?@^_";
    let all: Vec<u8> = [UPPER, LOWER, DIGIT, SPECIAL].concat();
    let rnd = crate::util::random_bytes(48);
    let mut out: Vec<u8> = Vec::with_capacity(24);
    for (i, set) in [UPPER, LOWER, DIGIT, SPECIAL].iter().enumerate() {
        out.push(set[rnd[i] as usize % set.len()]);
    }
    for b in &rnd[4..24] {
        out.push(all[*b as usize % all.len()]);
    }
    // Shuffle so the classes are not always in the first positions.
    for i in (1..out.len()).rev() {
        let j = rnd[24 + (i % 24)] as usize % (i + 1);
        out.swap(i, j);
    }
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_only_the_right_password_and_use_argon2id_owasp() {
        let h = hash("Correct-Horse-Battery-9").unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(verify("Correct-Horse-Battery-9", &h));
        assert!(!verify("correct-horse-battery-9", &h));
        assert!(!verify("x", "not a hash"));
    }

    #[test]
    fn policy_names_every_broken_rule() {
        let err = check_policy("alice", "short").unwrap_err().to_string();
        assert!(
            err.contains("16 characters") && err.contains("upper-case"),
            "{err}"
        );
        assert!(check_policy("alice", "xxAlice-2024-long-enough").is_err());
        assert!(check_policy("alice", "Tr0ub4dor&3-Horse-Staple").is_ok());
    }

    #[test]
    fn generated_passwords_pass_the_policy_and_differ() {
        let a = generate();
        let b = generate();
        assert_ne!(a, b);
        check_policy("testuser-fra-1", &a).unwrap();
    }
}
