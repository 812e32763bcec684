//! Unit tests of the auth module: keys generated here, real signatures, no network.

use super::jwks::{self, KeySet, Keys};
use super::jwt::{JwtAuthorizer, JwtSettings};
use super::rules::Rules;
use super::source::Source;
use super::Reason;
use crate::config::ClaimValue;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use openssl::bn::BigNumContext;
use openssl::ec::{EcGroup, EcKey};
use openssl::nid::Nid;
use openssl::pkey::PKey;
use openssl::rsa::Rsa;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

/// A signing key and its public JWK.
struct TestKey {
    encoding: EncodingKey,
    jwk: Value,
    public_pem: Vec<u8>,
}

fn rsa(kid: &str) -> TestKey {
    let rsa = Rsa::generate(2048).unwrap();
    let jwk = json!({"kty": "RSA", "kid": kid, "use": "sig",
        "n": B64.encode(rsa.n().to_vec()), "e": B64.encode(rsa.e().to_vec())});
    let pkey = PKey::from_rsa(rsa).unwrap();
    TestKey {
        encoding: EncodingKey::from_rsa_pem(&pkey.private_key_to_pem_pkcs8().unwrap()).unwrap(),
        jwk,
        public_pem: pkey.public_key_to_pem().unwrap(),
    }
}

fn ec(kid: &str, nid: Nid, crv: &str, size: usize) -> TestKey {
    let group = EcGroup::from_curve_name(nid).unwrap();
    let key = EcKey::generate(&group).unwrap();
    let (mut x, mut y) = (
        openssl::bn::BigNum::new().unwrap(),
        openssl::bn::BigNum::new().unwrap(),
    );
    let mut ctx = BigNumContext::new().unwrap();
    key.public_key()
        .affine_coordinates(&group, &mut x, &mut y, &mut ctx)
        .unwrap();
    let jwk = json!({"kty": "EC", "kid": kid, "crv": crv,
        "x": B64.encode(x.to_vec_padded(size as i32).unwrap()),
        "y": B64.encode(y.to_vec_padded(size as i32).unwrap())});
    let pkey = PKey::from_ec_key(key).unwrap();
    TestKey {
        encoding: EncodingKey::from_ec_pem(&pkey.private_key_to_pem_pkcs8().unwrap()).unwrap(),
        jwk,
        public_pem: pkey.public_key_to_pem().unwrap(),
    }
}

fn ed(kid: &str) -> TestKey {
    let pkey = PKey::generate_ed25519().unwrap();
    let jwk = json!({"kty": "OKP", "kid": kid, "crv": "Ed25519",
        "x": B64.encode(pkey.raw_public_key().unwrap())});
    TestKey {
        encoding: EncodingKey::from_ed_pem(&pkey.private_key_to_pem_pkcs8().unwrap()).unwrap(),
        jwk,
        public_pem: pkey.public_key_to_pem().unwrap(),
    }
}

/// Keys are slow to generate; every test shares one set.
fn keys() -> &'static [TestKey; 4] {
    static KEYS: OnceLock<[TestKey; 4]> = OnceLock::new();
    KEYS.get_or_init(|| {
        [
            rsa("rsa1"),
            ec("ec256", Nid::X9_62_PRIME256V1, "P-256", 32),
            ec("ec384", Nid::SECP384R1, "P-384", 48),
            ed("ed1"),
        ]
    })
}

const ISS: &str = "https://idp.example.com";
const SECRET: &str = "0123456789abcdef0123456789abcdef";

fn now() -> u64 {
    crate::clock::unix_secs()
}

fn settings(algorithms: &[Algorithm]) -> JwtSettings {
    JwtSettings {
        algorithms: algorithms.to_vec(),
        issuer: Some(ISS.into()),
        audiences: vec!["api".into(), "other".into()],
        leeway: 5,
        max_age: None,
        required: vec!["exp".into(), "sub".into()],
        sources: vec![Source::Bearer],
        forward: vec![
            ("sub".into(), http::HeaderName::from_static("x-consumer-id")),
            ("org.id".into(), http::HeaderName::from_static("x-org")),
        ],
        consumer_claim: "sub".into(),
        missing_keys_status: 503,
        cache_size: 100,
    }
}

fn jwks_authorizer(algorithms: &[Algorithm]) -> JwtAuthorizer {
    let doc = json!({"keys": keys().iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()});
    let keys = jwks::parse_jwks(doc.to_string().as_bytes()).unwrap();
    JwtAuthorizer::new(Arc::new(KeySet::fixed("t", keys)), settings(algorithms))
}

fn claims() -> Value {
    json!({"iss": ISS, "aud": "api", "sub": "alice", "exp": now() + 600, "iat": now(),
           "scope": "orders:read orders:write", "org": {"id": 42}})
}

fn sign(alg: Algorithm, key: &TestKey, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = key.jwk["kid"].as_str().map(str::to_string);
    encode(&header, claims, &key.encoding).unwrap()
}

fn with(changes: Value) -> Value {
    let mut c = claims();
    for (k, v) in changes.as_object().unwrap() {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    c
}

#[test]
fn every_asymmetric_algorithm_verifies_with_its_key() {
    let k = keys();
    let all = [
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::EdDSA,
    ];
    let auth = jwks_authorizer(&all);
    for (alg, key) in [
        (Algorithm::RS256, &k[0]),
        (Algorithm::RS384, &k[0]),
        (Algorithm::RS512, &k[0]),
        (Algorithm::PS256, &k[0]),
        (Algorithm::PS384, &k[0]),
        (Algorithm::PS512, &k[0]),
        (Algorithm::ES256, &k[1]),
        (Algorithm::ES384, &k[2]),
        (Algorithm::EdDSA, &k[3]),
    ] {
        let v = auth
            .verify(&sign(alg, key, &claims()), now())
            .unwrap_or_else(|r| panic!("{alg:?}: {r:?}"));
        assert_eq!(v.identity.consumer.as_deref(), Some("alice"));
        let headers: Vec<(&str, &str)> = v
            .identity
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.to_str().unwrap()))
            .collect();
        assert_eq!(headers, [("x-consumer-id", "alice"), ("x-org", "42")]);
    }
}

#[test]
fn hmac_with_a_secret() {
    let keys = Keys::single(jwks::KeyEntry {
        key: jsonwebtoken::DecodingKey::from_secret(SECRET.as_bytes()),
        family: jwks::Family::Hmac,
        alg: None,
    });
    let auth = JwtAuthorizer::new(
        Arc::new(KeySet::fixed("h", keys)),
        settings(&[Algorithm::HS256, Algorithm::HS512]),
    );
    for alg in [Algorithm::HS256, Algorithm::HS512] {
        let token = encode(
            &Header::new(alg),
            &claims(),
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap();
        assert!(auth.verify(&token, now()).is_ok(), "{alg:?}");
    }
    let wrong = encode(
        &Header::new(Algorithm::HS256),
        &claims(),
        &EncodingKey::from_secret(b"another secret of 32 bytes......"),
    )
    .unwrap();
    assert_eq!(
        auth.verify(&wrong, now()).unwrap_err(),
        Reason::InvalidSignature
    );
    let pinned_out = encode(
        &Header::new(Algorithm::HS384),
        &claims(),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    assert_eq!(
        auth.verify(&pinned_out, now()).unwrap_err(),
        Reason::AlgorithmNotAllowed
    );
}

#[test]
fn a_pem_key_verifies_tokens_with_any_kid() {
    let k = &keys()[1];
    let entry = jwks::parse_pem(&k.public_pem, jwks::Family::Ec).unwrap();
    let auth = JwtAuthorizer::new(
        Arc::new(KeySet::fixed("p", Keys::single(entry))),
        settings(&[Algorithm::ES256]),
    );
    assert!(auth
        .verify(&sign(Algorithm::ES256, k, &claims()), now())
        .is_ok());
    let no_kid = encode(&Header::new(Algorithm::ES256), &claims(), &k.encoding).unwrap();
    assert!(auth.verify(&no_kid, now()).is_ok());
    assert!(jwks::parse_pem(b"not pem", jwks::Family::Rsa).is_err());
}

#[test]
fn every_bad_token_is_refused_with_its_reason() {
    let k = keys();
    let auth = jwks_authorizer(&[Algorithm::RS256, Algorithm::ES256]);
    let rs = |c: Value| sign(Algorithm::RS256, &k[0], &c);
    let t = now();
    let cases: Vec<(&str, String, Reason)> = vec![
        ("expired", rs(with(json!({"exp": t - 60}))), Reason::Expired),
        (
            "not yet valid",
            rs(with(json!({"nbf": t + 60}))),
            Reason::NotYetValid,
        ),
        (
            "issued in the future",
            rs(with(json!({"iat": t + 60}))),
            Reason::InvalidIssuedAt,
        ),
        (
            "wrong issuer",
            rs(with(json!({"iss": "https://evil.example.com"}))),
            Reason::InvalidIssuer,
        ),
        (
            "no issuer",
            rs(with(json!({"iss": null}))),
            Reason::MissingClaim,
        ),
        (
            "wrong audience",
            rs(with(json!({"aud": ["x", "y"]}))),
            Reason::InvalidAudience,
        ),
        (
            "no audience",
            rs(with(json!({"aud": null}))),
            Reason::MissingClaim,
        ),
        (
            "no exp",
            rs(with(json!({"exp": null}))),
            Reason::MissingClaim,
        ),
        (
            "no sub",
            rs(with(json!({"sub": null}))),
            Reason::MissingClaim,
        ),
        ("garbage", "not.a.token".into(), Reason::Malformed),
        ("empty parts", "..".into(), Reason::Malformed),
    ];
    for (name, token, reason) in cases {
        assert_eq!(auth.verify(&token, t).unwrap_err(), reason, "{name}");
    }
    // Within the leeway is still fine.
    assert!(auth
        .verify(&rs(with(json!({"exp": t - 2, "nbf": t + 2}))), t)
        .is_ok());
    // An audience list passes when any entry is accepted.
    assert!(auth
        .verify(&rs(with(json!({"aud": ["x", "other"]}))), t)
        .is_ok());
}

#[test]
fn alg_none_and_algorithm_confusion_are_refused() {
    let k = keys();
    let auth = jwks_authorizer(&[Algorithm::RS256]);
    let body = B64.encode(claims().to_string());
    for header in [
        r#"{"alg":"none"}"#,
        r#"{"alg":"none","kid":"rsa1"}"#,
        r#"{"alg":"None"}"#,
    ] {
        let token = format!("{}.{body}.", B64.encode(header));
        assert_eq!(
            auth.verify(&token, now()).unwrap_err(),
            Reason::Malformed,
            "{header}"
        );
    }
    // HS256 "signed" with the RSA public key: the classic confusion attack.
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("rsa1".into());
    let forged = encode(
        &header,
        &claims(),
        &EncodingKey::from_secret(&k[0].public_pem),
    )
    .unwrap();
    assert_eq!(
        auth.verify(&forged, now()).unwrap_err(),
        Reason::AlgorithmNotAllowed
    );
    // Even with HS256 pinned next to RS256 the RSA key never verifies an HMAC.
    let both = jwks_authorizer(&[Algorithm::RS256, Algorithm::HS256]);
    assert_eq!(
        both.verify(&forged, now()).unwrap_err(),
        Reason::AlgorithmNotAllowed
    );
    // An ES256 token whose kid names the RSA key.
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("rsa1".into());
    let wrong_family = encode(&header, &claims(), &k[1].encoding).unwrap();
    let es = jwks_authorizer(&[Algorithm::RS256, Algorithm::ES256]);
    assert_eq!(
        es.verify(&wrong_family, now()).unwrap_err(),
        Reason::AlgorithmNotAllowed
    );
}

#[test]
fn tampering_and_unknown_keys_are_refused() {
    let k = keys();
    let auth = jwks_authorizer(&[Algorithm::RS256, Algorithm::ES256]);
    let token = sign(Algorithm::RS256, &k[0], &claims());
    let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
    parts[1] = B64.encode(with(json!({"sub": "admin"})).to_string());
    assert_eq!(
        auth.verify(&parts.join("."), now()).unwrap_err(),
        Reason::InvalidSignature
    );
    let other = rsa("rsa-unknown");
    assert_eq!(
        auth.verify(&sign(Algorithm::RS256, &other, &claims()), now())
            .unwrap_err(),
        Reason::UnknownKey
    );
    // A token signed by a key not in the set, claiming a known kid.
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("rsa1".into());
    let impostor = encode(&header, &claims(), &other.encoding).unwrap();
    assert_eq!(
        auth.verify(&impostor, now()).unwrap_err(),
        Reason::InvalidSignature
    );
}

#[test]
fn max_age_limits_old_tokens() {
    let k = keys();
    let mut s = settings(&[Algorithm::RS256]);
    s.max_age = Some(60);
    let doc = json!({"keys": [k[0].jwk.clone()]});
    let auth = JwtAuthorizer::new(
        Arc::new(KeySet::fixed(
            "m",
            jwks::parse_jwks(doc.to_string().as_bytes()).unwrap(),
        )),
        s,
    );
    let t = now();
    assert!(auth
        .verify(&sign(Algorithm::RS256, &k[0], &claims()), t)
        .is_ok());
    let old = sign(Algorithm::RS256, &k[0], &with(json!({"iat": t - 3600})));
    assert_eq!(auth.verify(&old, t).unwrap_err(), Reason::InvalidIssuedAt);
    let no_iat = sign(Algorithm::RS256, &k[0], &with(json!({"iat": null})));
    assert_eq!(
        auth.verify(&no_iat, t).unwrap_err(),
        Reason::InvalidIssuedAt
    );
}

#[test]
fn verified_tokens_are_cached_until_exp() {
    let k = keys();
    let auth = jwks_authorizer(&[Algorithm::ES256]);
    let t = now();
    let token = sign(Algorithm::ES256, &k[1], &with(json!({"exp": t + 100})));
    let first = auth.verify(&token, t).unwrap();
    let second = auth.verify(&token, t + 1).unwrap();
    assert!(
        Arc::ptr_eq(&first, &second),
        "second check should come from the cache"
    );
    // Past exp (beyond the leeway) the cache does not answer and the token is refused.
    assert_eq!(auth.verify(&token, t + 200).unwrap_err(), Reason::Expired);
}

#[test]
fn jwks_parsing_skips_what_cannot_verify() {
    let k = keys();
    let doc = json!({"keys": [
        {"kty": "RSA", "kid": "enc", "use": "enc", "n": k[0].jwk["n"], "e": "AQAB"},
        {"kty": "oct", "kid": "sym", "k": "c2VjcmV0"},
        {"kty": "XYZ", "kid": "odd"},
        {"kty": "RSA", "kid": "oaep", "alg": "RSA-OAEP", "n": k[0].jwk["n"], "e": "AQAB"},
        k[3].jwk,
    ]});
    let keys = jwks::parse_jwks(doc.to_string().as_bytes()).unwrap();
    assert_eq!(keys.len(), 1);
    assert!(keys.find(Some("ed1"), Algorithm::EdDSA).is_some());
    assert!(keys.find(Some("sym"), Algorithm::HS256).is_none());
    assert!(jwks::parse_jwks(br#"{"keys": []}"#).is_err());
    assert!(jwks::parse_jwks(b"<html>").is_err());
}

#[test]
fn cache_control_max_age() {
    use std::time::Duration;
    assert_eq!(
        jwks::max_age("public, max-age=300"),
        Some(Duration::from_secs(300))
    );
    assert_eq!(jwks::max_age("no-store"), Some(Duration::ZERO));
    assert_eq!(jwks::max_age("public"), None);
}

#[test]
fn scopes_and_claims_rules() {
    let k = keys();
    let auth = jwks_authorizer(&[Algorithm::RS256]);
    let token = |c: Value| {
        auth.verify(&sign(Algorithm::RS256, &k[0], &c), now())
            .unwrap()
    };
    let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let none = BTreeMap::new();
    let all = Rules::compile(&s(&["orders:read", "orders:write"]), false, &none);
    let any = Rules::compile(&s(&["admin", "orders:read"]), true, &none);
    let admin = Rules::compile(&s(&["admin"]), false, &none);
    let v = token(claims());
    assert_eq!(all.check(&v), Ok(()));
    assert_eq!(any.check(&v), Ok(()));
    assert_eq!(admin.check(&v), Err(Reason::InsufficientScope));
    assert!(admin
        .scope_challenge
        .as_ref()
        .unwrap()
        .to_str()
        .unwrap()
        .contains("scope=\"admin\""));
    let scp = token(with(json!({"scope": null, "scp": ["admin"]})));
    assert_eq!(admin.check(&scp), Ok(()));
    assert_eq!(all.check(&scp), Err(Reason::InsufficientScope));

    let mut claims_rule = BTreeMap::new();
    claims_rule.insert("org.id".to_string(), ClaimValue::Integer(42));
    claims_rule.insert("roles".to_string(), ClaimValue::String("billing".into()));
    let rule = Rules::compile(&[], false, &claims_rule);
    assert_eq!(
        rule.check(&token(with(json!({"roles": ["billing", "x"]})))),
        Ok(())
    );
    assert_eq!(
        rule.check(&token(with(json!({"roles": ["x"]})))),
        Err(Reason::ClaimMismatch)
    );
    assert_eq!(
        rule.check(&token(with(json!({"roles": "billing", "org": {"id": 7}})))),
        Err(Reason::ClaimMismatch)
    );
    assert_eq!(rule.check(&token(claims())), Err(Reason::ClaimMismatch));
}

#[test]
fn urls_must_be_https_unless_loopback_or_allowed() {
    assert!(crate::config::check_url("https://idp.example.com", false).is_ok());
    assert!(crate::config::check_url("http://127.0.0.1:8080/jwks", false).is_ok());
    assert!(crate::config::check_url("http://[::1]:8080/jwks", false).is_ok());
    assert!(crate::config::check_url("http://idp.internal/jwks", false).is_err());
    assert!(crate::config::check_url("http://idp.internal/jwks", true).is_ok());
    assert!(crate::config::check_url("ftp://idp.internal/jwks", true).is_err());
}

#[test]
fn authorizers_cannot_set_framing_or_gateway_headers() {
    let errors = crate::config::parse(
        "[[listeners]]\naddress = \"127.0.0.1:1\"\n[authorizers.a]\ntype = \"jwt\"\n\
         algorithms = [\"HS256\"]\nsecret = \"0123456789abcdef0123456789abcdef\"\n\
         forward_claims = { sub = \"Content-Length\" }\n",
    )
    .unwrap_err();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].path.as_str(), "authorizers.a.forward_claims.sub");
    assert!(
        errors[0].message.contains("frames the request"),
        "{errors:?}"
    );
}
