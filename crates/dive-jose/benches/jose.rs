//! Token signing and relying-party validation throughput (one core).

use criterion::{Criterion, criterion_group, criterion_main};
use dive_jose::{Alg, Jwks, KeySet, SigningKey, Validation, now};
use serde_json::json;

fn bench(c: &mut Criterion) {
    for alg in [Alg::RS256, Alg::ES256] {
        let key = SigningKey::generate("k", alg).unwrap();
        let claims = json!({
            "iss": "https://localhost:8443", "sub": "u1", "aud": "dive-fra",
            "exp": now() + 3600, "jti": "abc", "clearance": "SECRET DÉFENSE",
            "acpCOI": ["NATO"], "countryOfAffiliation": "FRA",
        });
        let set = KeySet::from_jwks(&Jwks {
            keys: vec![key.public_jwk()],
        });
        let token = key.sign("at+jwt", &claims).unwrap();
        let v = Validation::new("https://localhost:8443")
            .with_audience("dive-fra")
            .with_typ("at+jwt");
        c.bench_function(&format!("sign {}", alg.as_str()), |b| {
            b.iter(|| key.sign("at+jwt", &claims).unwrap())
        });
        c.bench_function(&format!("validate {}", alg.as_str()), |b| {
            b.iter(|| set.verify(&token, &v).unwrap())
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
