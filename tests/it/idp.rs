//! A real identity provider for the tests: keys generated here (RSA, EC, Ed25519), an OIDC
//! discovery document and a JWKS served over HTTP on 127.0.0.1, and tokens signed with them.

#![allow(dead_code)]

use crate::common::*;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use hyper::{Request, Response};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use openssl::bn::{BigNum, BigNumContext};
use openssl::ec::{EcGroup, EcKey};
use openssl::nid::Nid;
use openssl::pkey::PKey;
use openssl::rsa::Rsa;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// A private key and its public JWK.
#[derive(Clone)]
pub struct Key {
    pub kid: String,
    pub alg: Algorithm,
    encoding: EncodingKey,
    pub jwk: Value,
    pub public_pem: Vec<u8>,
}

impl Key {
    pub fn rsa(kid: &str) -> Self {
        let rsa = Rsa::generate(2048).unwrap();
        let jwk = json!({"kty": "RSA", "kid": kid, "use": "sig",
            "n": B64.encode(rsa.n().to_vec()), "e": B64.encode(rsa.e().to_vec())});
        let pkey = PKey::from_rsa(rsa).unwrap();
        let pem = pkey.private_key_to_pem_pkcs8().unwrap();
        Self {
            kid: kid.into(),
            alg: Algorithm::RS256,
            encoding: EncodingKey::from_rsa_pem(&pem).unwrap(),
            jwk,
            public_pem: pkey.public_key_to_pem().unwrap(),
        }
    }

    pub fn ec256(kid: &str) -> Self {
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
        let key = EcKey::generate(&group).unwrap();
        let (mut x, mut y) = (BigNum::new().unwrap(), BigNum::new().unwrap());
        let mut ctx = BigNumContext::new().unwrap();
        key.public_key()
            .affine_coordinates(&group, &mut x, &mut y, &mut ctx)
            .unwrap();
        let jwk = json!({"kty": "EC", "kid": kid, "crv": "P-256", "alg": "ES256",
            "x": B64.encode(x.to_vec_padded(32).unwrap()),
            "y": B64.encode(y.to_vec_padded(32).unwrap())});
        let pkey = PKey::from_ec_key(key).unwrap();
        let pem = pkey.private_key_to_pem_pkcs8().unwrap();
        Self {
            kid: kid.into(),
            alg: Algorithm::ES256,
            encoding: EncodingKey::from_ec_pem(&pem).unwrap(),
            jwk,
            public_pem: pkey.public_key_to_pem().unwrap(),
        }
    }

    pub fn ed25519(kid: &str) -> Self {
        let pkey = PKey::generate_ed25519().unwrap();
        let jwk = json!({"kty": "OKP", "kid": kid, "crv": "Ed25519",
            "x": B64.encode(pkey.raw_public_key().unwrap())});
        let pem = pkey.private_key_to_pem_pkcs8().unwrap();
        Self {
            kid: kid.into(),
            alg: Algorithm::EdDSA,
            encoding: EncodingKey::from_ed_pem(&pem).unwrap(),
            jwk,
            public_pem: pkey.public_key_to_pem().unwrap(),
        }
    }

    /// A token with `claims`, signed with `alg` (which must suit the key).
    pub fn sign_with(&self, alg: Algorithm, claims: &Value) -> String {
        let mut header = Header::new(alg);
        header.kid = Some(self.kid.clone());
        encode(&header, claims, &self.encoding).unwrap()
    }

    pub fn sign(&self, claims: &Value) -> String {
        self.sign_with(self.alg, claims)
    }
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// `alg: none` with the given claims.
pub fn unsigned(claims: &Value) -> String {
    format!(
        "{}.{}.",
        B64.encode(r#"{"alg":"none","typ":"JWT"}"#),
        B64.encode(claims.to_string())
    )
}

/// Replace the payload of a signed token, keeping its signature.
pub fn tampered(token: &str, claims: &Value) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    format!(
        "{}.{}.{}",
        parts[0],
        B64.encode(claims.to_string()),
        parts[2]
    )
}

/// HS256 "signed" with a public key as the secret: the algorithm confusion attack.
pub fn confused(key: &Key, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(key.kid.clone());
    encode(&header, claims, &EncodingKey::from_secret(&key.public_pem)).unwrap()
}

/// The identity provider: discovery at `/.well-known/openid-configuration`, keys at `/jwks`.
pub struct Idp {
    pub server: Upstream,
    pub keys: Arc<Mutex<Vec<Value>>>,
    /// JWKS fetches served.
    pub jwks_hits: Arc<AtomicUsize>,
    /// While false every request gets a 503.
    pub up: Arc<AtomicBool>,
    pub cache_control: Arc<Mutex<Option<String>>>,
}

impl Idp {
    pub async fn start(keys: &[&Key]) -> Self {
        let jwks: Arc<Mutex<Vec<Value>>> =
            Arc::new(Mutex::new(keys.iter().map(|k| k.jwk.clone()).collect()));
        let hits = Arc::new(AtomicUsize::new(0));
        let up = Arc::new(AtomicBool::new(true));
        let cache_control: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
        let (j, h, u, cc) = (
            jwks.clone(),
            hits.clone(),
            up.clone(),
            cache_control.clone(),
        );
        let server = Upstream::start(move |req: Request<hyper::body::Incoming>| {
            let (j, h, u, cc) = (j.clone(), h.clone(), u.clone(), cc.clone());
            async move {
                if !u.load(Ordering::SeqCst) {
                    let mut resp = Response::new(full("down"));
                    *resp.status_mut() = hyper::StatusCode::SERVICE_UNAVAILABLE;
                    return resp;
                }
                let host = req.headers()["host"].to_str().unwrap().to_string();
                let issuer = format!("http://{host}");
                let body = match req.uri().path() {
                    "/.well-known/openid-configuration" => {
                        json!({"issuer": issuer, "jwks_uri": format!("{issuer}/jwks")})
                    }
                    "/jwks" => {
                        h.fetch_add(1, Ordering::SeqCst);
                        json!({"keys": j.lock().unwrap().clone()})
                    }
                    _ => {
                        let mut resp = Response::new(full("not found"));
                        *resp.status_mut() = hyper::StatusCode::NOT_FOUND;
                        return resp;
                    }
                };
                let mut resp = Response::new(full(body.to_string()));
                resp.headers_mut()
                    .insert("content-type", "application/json".parse().unwrap());
                if let Some(v) = cc.lock().unwrap().as_ref() {
                    resp.headers_mut()
                        .insert("cache-control", v.parse().unwrap());
                }
                resp
            }
        })
        .await;
        Self {
            server,
            keys: jwks,
            jwks_hits: hits,
            up,
            cache_control,
        }
    }

    pub fn issuer(&self) -> String {
        format!("http://{}", self.server.address())
    }

    pub fn add_key(&self, key: &Key) {
        self.keys.lock().unwrap().push(key.jwk.clone());
    }

    pub fn hits(&self) -> usize {
        self.jwks_hits.load(Ordering::SeqCst)
    }

    pub fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
    }

    /// Claims that pass the standard checks for this issuer and audience `api`.
    pub fn claims(&self, sub: &str) -> Value {
        json!({"iss": self.issuer(), "aud": "api", "sub": sub, "iat": now(),
               "exp": now() + 600, "scope": "orders:read", "tenant": "acme"})
    }
}
