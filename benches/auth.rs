//! Token verification cost: a cached token (the common case: clients reuse a token for its
//! lifetime), and uncached RS256, ES256 and EdDSA verifications; an API key lookup.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use gatehouse::auth::{self, AuthRegistry, AuthorizerKind};
use gatehouse::config::{AuthorizerConfig, KeyPath};
use gatehouse::observe::metrics::Metrics;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use openssl::bn::{BigNum, BigNumContext};
use openssl::ec::{EcGroup, EcKey};
use openssl::nid::Nid;
use openssl::pkey::PKey;
use openssl::rsa::Rsa;
use pingora::http::RequestHeader;
use serde_json::json;

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// (kid, alg, private key, public JWK)
fn keys() -> Vec<(&'static str, Algorithm, EncodingKey, serde_json::Value)> {
    let rsa = Rsa::generate(2048).unwrap();
    let rsa_jwk = json!({"kty": "RSA", "kid": "rsa", "n": B64.encode(rsa.n().to_vec()), "e": B64.encode(rsa.e().to_vec())});
    let rsa_pem = PKey::from_rsa(rsa)
        .unwrap()
        .private_key_to_pem_pkcs8()
        .unwrap();

    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    let ec = EcKey::generate(&group).unwrap();
    let (mut x, mut y) = (BigNum::new().unwrap(), BigNum::new().unwrap());
    ec.public_key()
        .affine_coordinates(&group, &mut x, &mut y, &mut BigNumContext::new().unwrap())
        .unwrap();
    let ec_jwk = json!({"kty": "EC", "kid": "ec", "crv": "P-256",
        "x": B64.encode(x.to_vec_padded(32).unwrap()), "y": B64.encode(y.to_vec_padded(32).unwrap())});
    let ec_pem = PKey::from_ec_key(ec)
        .unwrap()
        .private_key_to_pem_pkcs8()
        .unwrap();

    let ed = PKey::generate_ed25519().unwrap();
    let ed_jwk = json!({"kty": "OKP", "kid": "ed", "crv": "Ed25519", "x": B64.encode(ed.raw_public_key().unwrap())});
    let ed_pem = ed.private_key_to_pem_pkcs8().unwrap();
    vec![
        (
            "rsa",
            Algorithm::RS256,
            EncodingKey::from_rsa_pem(&rsa_pem).unwrap(),
            rsa_jwk,
        ),
        (
            "ec",
            Algorithm::ES256,
            EncodingKey::from_ec_pem(&ec_pem).unwrap(),
            ec_jwk,
        ),
        (
            "ed",
            Algorithm::EdDSA,
            EncodingKey::from_ed_pem(&ed_pem).unwrap(),
            ed_jwk,
        ),
    ]
}

fn authorizer(
    dir: &std::path::Path,
    jwks: &serde_json::Value,
    cache_size: usize,
) -> auth::Authorizer {
    let file = dir.join(format!("jwks-{cache_size}.json"));
    std::fs::write(&file, jwks.to_string()).unwrap();
    let config: gatehouse::config::JwtConfig = toml::from_str(&format!(
        "algorithms = [\"RS256\", \"ES256\", \"EdDSA\"]\nissuer = \"https://idp\"\naudiences = [\"api\"]\n\
         jwks_file = \"{}\"\ncache_size = {cache_size}\nforward_claims = {{ sub = \"x-consumer-id\" }}\n",
        file.display()
    ))
    .unwrap();
    let metrics = Metrics::new().unwrap();
    auth::compile(
        "bench",
        &KeyPath::top("authorizers").key("bench"),
        &AuthorizerConfig::Jwt(Box::new(config)),
        &AuthRegistry::default(),
        &metrics,
    )
    .map_err(|e| format!("{e:?}"))
    .unwrap()
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys();
    let jwks = json!({"keys": keys.iter().map(|k| k.3.clone()).collect::<Vec<_>>()});
    let claims = json!({"iss": "https://idp", "aud": "api", "sub": "alice", "exp": now() + 3600,
                        "iat": now(), "scope": "orders:read orders:write"});
    let tokens: Vec<(Algorithm, String)> = keys
        .iter()
        .map(|(kid, alg, key, _)| {
            let mut h = Header::new(*alg);
            h.kid = Some(kid.to_string());
            (*alg, encode(&h, &claims, key).unwrap())
        })
        .collect();

    let cached = authorizer(dir.path(), &jwks, 10_000);
    let uncached = authorizer(dir.path(), &jwks, 0);
    let (AuthorizerKind::Jwt(cached), AuthorizerKind::Jwt(uncached)) =
        (&cached.kind, &uncached.kind)
    else {
        unreachable!()
    };
    let t = now();
    let rs = &tokens[0].1;
    cached.verify(rs, t).unwrap();
    c.bench_function("jwt_verify_cached", |b| {
        b.iter(|| cached.verify(black_box(rs), t).unwrap())
    });
    for (alg, token) in &tokens {
        c.bench_function(&format!("jwt_verify_uncached_{alg:?}"), |b| {
            b.iter(|| uncached.verify(black_box(token), t).unwrap())
        });
    }

    let key_config: gatehouse::config::ApiKeyConfig = toml::from_str(
        "keys = [{ consumer = \"alice\", key = \"alice-key-0123456789\" }, { consumer = \"bob\", key = \"bob-key-0123456789ab\" }]",
    )
    .unwrap();
    let metrics = Metrics::new().unwrap();
    let keys_auth = auth::compile(
        "keys",
        &KeyPath::top("authorizers").key("keys"),
        &AuthorizerConfig::ApiKey(key_config),
        &AuthRegistry::default(),
        &metrics,
    )
    .map_err(|e| format!("{e:?}"))
    .unwrap();
    let AuthorizerKind::ApiKey(api_keys) = &keys_auth.kind else {
        unreachable!()
    };
    let mut req = RequestHeader::build("GET", b"/", None).unwrap();
    req.insert_header("x-api-key", "bob-key-0123456789ab")
        .unwrap();
    c.bench_function("api_key_check", |b| {
        b.iter(|| api_keys.check(black_box(&req)).unwrap())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
