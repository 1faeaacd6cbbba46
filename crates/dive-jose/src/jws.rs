//! Signing and verifying compact JWS with algorithm binding.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    self, ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _,
    ParsedPublicKey, RSA_PKCS1_2048_8192_SHA256, RsaKeyPair, RsaPublicKeyComponents,
};
use serde::{Deserialize, Serialize};

use crate::{JoseError, Jwk, b64, unb64};

/// The signature algorithms DIVE accepts. Anything else (`none`, `HS*`, …) is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Alg {
    RS256,
    ES256,
}

impl Alg {
    pub fn as_str(self) -> &'static str {
        match self {
            Alg::RS256 => "RS256",
            Alg::ES256 => "ES256",
        }
    }

    pub fn parse(s: &str) -> Result<Alg, JoseError> {
        match s {
            "RS256" => Ok(Alg::RS256),
            "ES256" => Ok(Alg::ES256),
            other => Err(JoseError::UnsupportedAlg(other.to_string())),
        }
    }
}

/// The protected header of a token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub alg: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub typ: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
}

enum Private {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
}

/// A private signing key with its `kid`.
pub struct SigningKey {
    kid: String,
    alg: Alg,
    private: Private,
    pkcs8: Vec<u8>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A fresh key (RSA 2048 for RS256, P-256 for ES256).
    pub fn generate(kid: impl Into<String>, alg: Alg) -> Result<SigningKey, JoseError> {
        let key_err = |e: &dyn std::fmt::Display| JoseError::Key(e.to_string());
        let pkcs8 = match alg {
            Alg::RS256 => {
                let kp = RsaKeyPair::generate(KeySize::Rsa2048).map_err(|e| key_err(&e))?;
                kp.as_der().map_err(|e| key_err(&e))?.as_ref().to_vec()
            }
            Alg::ES256 => {
                EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                    .map_err(|e| key_err(&e))?
                    .as_ref()
                    .to_vec()
            }
        };
        SigningKey::from_pkcs8(kid, alg, &pkcs8)
    }

    /// Load a key from its PKCS#8 DER encoding (as stored).
    pub fn from_pkcs8(
        kid: impl Into<String>,
        alg: Alg,
        pkcs8: &[u8],
    ) -> Result<SigningKey, JoseError> {
        let private = match alg {
            Alg::RS256 => Private::Rsa(
                RsaKeyPair::from_pkcs8(pkcs8).map_err(|e| JoseError::Key(e.to_string()))?,
            ),
            Alg::ES256 => Private::Ec(
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8)
                    .map_err(|e| JoseError::Key(e.to_string()))?,
            ),
        };
        Ok(SigningKey {
            kid: kid.into(),
            alg,
            private,
            pkcs8: pkcs8.to_vec(),
        })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn alg(&self) -> Alg {
        self.alg
    }

    /// The private key's PKCS#8 DER, for storage (treat as a secret).
    pub fn pkcs8_der(&self) -> &[u8] {
        &self.pkcs8
    }

    /// The public half as a JWK with `kid`, `alg` and `use: sig`.
    pub fn public_jwk(&self) -> Jwk {
        let mut jwk = Jwk {
            kty: String::new(),
            kid: Some(self.kid.clone()),
            use_: Some("sig".to_string()),
            alg: Some(self.alg.as_str().to_string()),
            n: None,
            e: None,
            crv: None,
            x: None,
            y: None,
        };
        match &self.private {
            Private::Rsa(kp) => {
                let public = kp.public_key();
                jwk.kty = "RSA".to_string();
                jwk.n = Some(b64(public.modulus().big_endian_without_leading_zero()));
                jwk.e = Some(b64(public.exponent().big_endian_without_leading_zero()));
            }
            Private::Ec(kp) => {
                // Uncompressed SEC1 point: 0x04 || x (32) || y (32).
                let point = kp.public_key().as_ref();
                jwk.kty = "EC".to_string();
                jwk.crv = Some("P-256".to_string());
                jwk.x = Some(b64(&point[1..33]));
                jwk.y = Some(b64(&point[33..65]));
            }
        }
        jwk
    }

    /// Sign `signing_input` (`header.payload`) and return the raw signature.
    fn sign_raw(&self, input: &[u8]) -> Result<Vec<u8>, JoseError> {
        let rng = SystemRandom::new();
        match &self.private {
            Private::Rsa(kp) => {
                let mut sig = vec![0u8; kp.public_modulus_len()];
                kp.sign(&signature::RSA_PKCS1_SHA256, &rng, input, &mut sig)
                    .map_err(|_| JoseError::Key("RSA signing failed".to_string()))?;
                Ok(sig)
            }
            Private::Ec(kp) => kp
                .sign(&rng, input)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| JoseError::Key("ECDSA signing failed".to_string())),
        }
    }

    /// A compact JWS of `claims` with header `{alg, typ, kid}`.
    pub fn sign<T: Serialize>(&self, typ: &str, claims: &T) -> Result<String, JoseError> {
        let header = Header {
            alg: self.alg.as_str().to_string(),
            typ: Some(typ.to_string()),
            kid: Some(self.kid.clone()),
        };
        sign_with(&header, claims, |input| self.sign_raw(input))
    }
}

/// Assemble a compact JWS from any header and a signing function. Exposed so that tests can build
/// hostile tokens (e.g. `alg: none`) with the same encoder.
pub fn sign_with<T: Serialize>(
    header: &Header,
    claims: &T,
    sign: impl FnOnce(&[u8]) -> Result<Vec<u8>, JoseError>,
) -> Result<String, JoseError> {
    let h = serde_json::to_vec(header).map_err(|_| JoseError::Malformed("header"))?;
    let c = serde_json::to_vec(claims).map_err(|_| JoseError::Malformed("claims"))?;
    let mut out = format!("{}.{}", b64(&h), b64(&c));
    let sig = sign(out.as_bytes())?;
    out.push('.');
    out.push_str(&b64(&sig));
    Ok(out)
}

/// A public key ready to verify, bound to one algorithm.
#[derive(Debug)]
pub struct VerifyingKey {
    kid: Option<String>,
    alg: Alg,
    key: ParsedPublicKey,
}

impl VerifyingKey {
    /// Parse a JWK. Its algorithm comes from `kty`/`crv` (and `alg` if present, which must agree);
    /// keys meant for encryption (`use: enc`) are refused.
    pub fn from_jwk(jwk: &Jwk) -> Result<VerifyingKey, JoseError> {
        if jwk.use_.as_deref().is_some_and(|u| u != "sig") {
            return Err(JoseError::Key("key is not for signatures".to_string()));
        }
        let field = |v: &Option<String>, name: &str| -> Result<Vec<u8>, JoseError> {
            let s = v
                .as_deref()
                .ok_or_else(|| JoseError::Key(format!("{} key without {name}", jwk.kty)))?;
            unb64(s).map_err(|_| JoseError::Key(format!("{name} is not base64url")))
        };
        let (alg, key) = match jwk.kty.as_str() {
            "RSA" => {
                let n = field(&jwk.n, "n")?;
                let e = field(&jwk.e, "e")?;
                let key = RsaPublicKeyComponents { n: &n, e: &e }
                    .to_parsed_public_key(&RSA_PKCS1_2048_8192_SHA256)
                    .map_err(|e| JoseError::Key(e.to_string()))?;
                (Alg::RS256, key)
            }
            "EC" => {
                if jwk.crv.as_deref() != Some("P-256") {
                    return Err(JoseError::Key(
                        "only P-256 EC keys are accepted".to_string(),
                    ));
                }
                let x = field(&jwk.x, "x")?;
                let y = field(&jwk.y, "y")?;
                if x.len() != 32 || y.len() != 32 {
                    return Err(JoseError::Key(
                        "P-256 coordinates must be 32 bytes".to_string(),
                    ));
                }
                let mut point = Vec::with_capacity(65);
                point.push(4);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                let key = ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
                    .map_err(|e| JoseError::Key(e.to_string()))?;
                (Alg::ES256, key)
            }
            other => return Err(JoseError::Key(format!("unsupported key type {other:?}"))),
        };
        if let Some(declared) = &jwk.alg
            && declared != alg.as_str()
        {
            return Err(JoseError::Key(format!(
                "key declares alg {declared:?} but is a {} key",
                alg.as_str()
            )));
        }
        Ok(VerifyingKey {
            kid: jwk.kid.clone(),
            alg,
            key,
        })
    }

    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    pub fn alg(&self) -> Alg {
        self.alg
    }
}

/// The parts of a compact JWS.
struct Parts<'a> {
    signing_input: &'a str,
    header: Header,
    payload: &'a str,
    signature: Vec<u8>,
}

fn split(token: &str) -> Result<Parts<'_>, JoseError> {
    let mut it = token.split('.');
    let (Some(h), Some(p), Some(s), None) = (it.next(), it.next(), it.next(), it.next()) else {
        return Err(JoseError::Malformed("a JWS has exactly three parts"));
    };
    let header: Header = serde_json::from_slice(&unb64(h)?)
        .map_err(|_| JoseError::Malformed("header is not a JSON object with alg"))?;
    Ok(Parts {
        signing_input: &token[..h.len() + 1 + p.len()],
        header,
        payload: p,
        signature: unb64(s)?,
    })
}

/// The header of a token, unverified (to pick a key).
pub fn decode_header(token: &str) -> Result<Header, JoseError> {
    Ok(split(token)?.header)
}

/// Verify a token's signature with a key chosen by `find_key(kid)` and return its claims (not yet
/// checked against any issuer or time: see [`crate::Validation`]).
pub fn verify_token<'k>(
    token: &str,
    find_key: impl FnOnce(Option<&str>) -> Result<&'k VerifyingKey, JoseError>,
) -> Result<serde_json::Map<String, serde_json::Value>, JoseError> {
    let parts = split(token)?;
    // Refuse `none`, HMAC and anything unknown before looking at keys.
    let alg = Alg::parse(&parts.header.alg)?;
    let key = find_key(parts.header.kid.as_deref())?;
    if key.alg != alg {
        return Err(JoseError::AlgMismatch {
            token: parts.header.alg.clone(),
            key: key.alg.as_str(),
        });
    }
    key.key
        .verify_sig(parts.signing_input.as_bytes(), &parts.signature)
        .map_err(|_| JoseError::BadSignature)?;
    let payload = unb64(parts.payload)?;
    serde_json::from_slice(&payload)
        .map_err(|_| JoseError::Malformed("payload is not a JSON object"))
}

/// The SHA-256 left-half hash used for `at_hash` / `c_hash` (OIDC Core §3.1.3.6), base64url.
pub fn half_hash(value: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, value.as_bytes());
    b64(&digest.as_ref()[..16])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn keyset(keys: &[&SigningKey]) -> Vec<VerifyingKey> {
        keys.iter()
            .map(|k| VerifyingKey::from_jwk(&k.public_jwk()).unwrap())
            .collect()
    }

    fn pick<'a>(
        set: &'a [VerifyingKey],
    ) -> impl FnOnce(Option<&str>) -> Result<&'a VerifyingKey, JoseError> {
        move |kid| {
            set.iter()
                .find(|k| k.kid() == kid)
                .ok_or_else(|| JoseError::UnknownKid(kid.unwrap_or_default().to_string()))
        }
    }

    #[test]
    fn rs256_and_es256_round_trip_through_their_jwks() {
        for alg in [Alg::RS256, Alg::ES256] {
            let key = SigningKey::generate("k1", alg).unwrap();
            let token = key.sign("JWT", &json!({"sub": "alice"})).unwrap();
            let set = keyset(&[&key]);
            let claims = verify_token(&token, pick(&set)).unwrap();
            assert_eq!(claims["sub"], "alice");
            // Reloading from PKCS#8 gives the same public key.
            let again = SigningKey::from_pkcs8("k1", alg, key.pkcs8_der()).unwrap();
            assert_eq!(again.public_jwk(), key.public_jwk());
        }
    }

    #[test]
    fn a_tampered_payload_fails_the_signature() {
        let key = SigningKey::generate("k1", Alg::ES256).unwrap();
        let token = key.sign("JWT", &json!({"sub": "alice"})).unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        let forged = format!("{}.{}.{}", parts[0], b64(br#"{"sub":"mallory"}"#), parts[2]);
        let set = keyset(&[&key]);
        assert_eq!(
            verify_token(&forged, pick(&set)).unwrap_err(),
            JoseError::BadSignature
        );
    }

    #[test]
    fn alg_none_and_hmac_are_refused_before_any_key_is_used() {
        let key = SigningKey::generate("k1", Alg::RS256).unwrap();
        let set = keyset(&[&key]);
        for alg in ["none", "HS256", "RS512", "PS256"] {
            let header = Header {
                alg: alg.to_string(),
                typ: Some("JWT".to_string()),
                kid: Some("k1".to_string()),
            };
            let token = sign_with(&header, &json!({"sub": "x"}), |_| Ok(vec![])).unwrap();
            assert_eq!(
                verify_token(&token, pick(&set)).unwrap_err(),
                JoseError::UnsupportedAlg(alg.to_string())
            );
        }
    }

    #[test]
    fn an_es256_header_on_an_rsa_key_is_key_confusion() {
        let rsa = SigningKey::generate("k1", Alg::RS256).unwrap();
        let ec = SigningKey::generate("k1", Alg::ES256).unwrap();
        // Signed by an EC key but presented under the RSA key's kid.
        let token = ec.sign("JWT", &json!({"sub": "x"})).unwrap();
        let set = keyset(&[&rsa]);
        assert!(matches!(
            verify_token(&token, pick(&set)).unwrap_err(),
            JoseError::AlgMismatch { .. }
        ));
    }

    #[test]
    fn malformed_tokens_are_named() {
        let key = SigningKey::generate("k1", Alg::ES256).unwrap();
        let set = keyset(&[&key]);
        for bad in ["", "a.b", "a.b.c.d", "!!.e30.AA"] {
            assert!(matches!(
                verify_token(bad, pick(&set)).unwrap_err(),
                JoseError::Malformed(_)
            ));
        }
    }

    #[test]
    fn jwks_with_inconsistent_alg_or_enc_use_are_refused() {
        let key = SigningKey::generate("k1", Alg::RS256).unwrap();
        let mut jwk = key.public_jwk();
        jwk.alg = Some("ES256".to_string());
        assert!(VerifyingKey::from_jwk(&jwk).is_err());
        let mut jwk = key.public_jwk();
        jwk.use_ = Some("enc".to_string());
        assert!(VerifyingKey::from_jwk(&jwk).is_err());
    }
}
