//! Interoperability with an independent OpenID Connect implementation: the `openidconnect` crate,
//! as a relying party, discovers the real IdP over HTTPS, runs the authorization code flow with
//! PKCE, state and nonce, exchanges the code with `client_secret_basic`, validates the ID token
//! its own way (signature through the published JWKS, `iss`, `aud`, `exp`, `nonce`, `at_hash`),
//! reads userinfo and refreshes. The browser's part (the login page) is played by DIVE's
//! login helper on the URL the library built.

use dive_core::{CountryCode, OrganizationType};
use dive_idp::clients::{GrantType, NewClient, NewClientAuth};
use dive_idp::login_helper;
use dive_idp::users::NewUser;
use dive_idp::{IdpConfig, Running};
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreProviderMetadata, CoreUserInfoClaims,
};
use openidconnect::{
    AccessTokenHash, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce,
    OAuth2TokenResponse, PkceCodeChallenge, RedirectUrl, Scope, TokenResponse,
};

const REDIRECT: &str = "https://rp.example/callback";
const PASSWORD: &str = "Interop-Password-For-Dive-7!";

/// The relying party's own HTTP client (the library's reqwest), trusting the installation CA and
/// never following redirects, as the library requires.
fn rp_http(home: &std::path::Path) -> reqwest_012::Client {
    let ca = std::fs::read(home.join("pki/ca/cert.pem")).unwrap();
    reqwest_012::Client::builder()
        .add_root_certificate(reqwest_012::Certificate::from_pem(&ca).unwrap())
        .redirect(reqwest_012::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn idp() -> (tempfile::TempDir, Running, reqwest::Client, String) {
    let home = tempfile::tempdir().unwrap();
    let cfg = IdpConfig::new(CountryCode::new("DEU").unwrap(), home.path().to_path_buf());
    let idp = dive_idp::start(cfg, false).await.unwrap();
    let (_, secret) = dive_idp::clients::create(
        &idp.db,
        &NewClient {
            client_id: "interop-rp".into(),
            auth: NewClientAuth::GenerateSecret,
            redirect_uris: vec![REDIRECT.into()],
            post_logout_redirect_uris: vec![],
            grant_types: vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
        },
    )
    .await
    .unwrap();
    dive_idp::users::create(
        &idp.db,
        &NewUser {
            username: "greta".into(),
            password: PASSWORD.into(),
            unique_id: None,
            clearance: "OFFEN".into(),
            country: CountryCode::new("DEU").unwrap(),
            coi: vec![],
            organization_type: OrganizationType::Gov,
            roles: vec!["user".into()],
        },
    )
    .await
    .unwrap();
    // Trusts the installation CA and never follows redirects (as the library requires, and as
    // the login helper needs to read the IdP's answers).
    let http = dive_http::https_client(&dive_pki::Pki::open(home.path()).unwrap()).unwrap();
    (home, idp, http, secret.unwrap())
}

#[tokio::test]
async fn an_independent_relying_party_library_signs_in_validates_and_refreshes() {
    let (home, idp, http, secret) = idp().await;
    let rp = rp_http(home.path());
    let meta =
        CoreProviderMetadata::discover_async(IssuerUrl::new(idp.issuer.clone()).unwrap(), &rp)
            .await
            .unwrap_or_else(|e| panic!("discovery: {e:?}"));
    let client = CoreClient::from_provider_metadata(
        meta,
        ClientId::new("interop-rp".into()),
        Some(ClientSecret::new(secret)),
    )
    .set_redirect_uri(RedirectUrl::new(REDIRECT.into()).unwrap());

    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, state, nonce) = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("profile".into()))
        .add_scope(Scope::new("coalition".into()))
        .set_pkce_challenge(challenge)
        .url();
    let pages = login_helper::login_at(&http, &idp.issuer, url.as_str(), "greta", PASSWORD, None)
        .await
        .unwrap_or_else(|e| panic!("login pages: {e}"));
    let back = url::Url::parse(&pages.location).unwrap();
    assert!(pages.location.starts_with(REDIRECT), "{}", pages.location);
    let param = |k: &str| {
        back.query_pairs()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.into_owned())
            .unwrap_or_else(|| panic!("no {k} in {back}"))
    };
    assert_eq!(param("state"), *state.secret());

    let tokens = client
        .exchange_code(AuthorizationCode::new(param("code")))
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&rp)
        .await
        .unwrap_or_else(|e| panic!("code exchange: {e:?}"));
    let id_token = tokens.id_token().expect("an ID token for the openid scope");
    let id_verifier = client.id_token_verifier();
    let claims = id_token
        .claims(&id_verifier, &nonce)
        .unwrap_or_else(|e| panic!("the library rejects the ID token: {e:?}"));
    assert_eq!(claims.issuer().as_str(), idp.issuer);
    assert!(claims.audiences().iter().any(|a| **a == "interop-rp"));
    let expected = claims.access_token_hash().expect("at_hash");
    let actual = AccessTokenHash::from_token(
        tokens.access_token(),
        id_token.signing_alg().unwrap(),
        id_token.signing_key(&id_verifier).unwrap(),
    )
    .unwrap();
    assert_eq!(&actual, expected);

    let info: CoreUserInfoClaims = client
        .user_info(
            tokens.access_token().clone(),
            Some(claims.subject().clone()),
        )
        .unwrap()
        .request_async(&rp)
        .await
        .unwrap_or_else(|e| panic!("userinfo: {e:?}"));
    assert_eq!(info.subject(), claims.subject());

    // A wrong nonce is refused by the library too: the ID token is bound to this login.
    assert!(
        id_token
            .claims(&id_verifier, &Nonce::new("another".into()))
            .is_err()
    );

    let refreshed = client
        .exchange_refresh_token(tokens.refresh_token().expect("a refresh token"))
        .unwrap()
        .request_async(&rp)
        .await
        .unwrap_or_else(|e| panic!("refresh: {e:?}"));
    assert_ne!(
        refreshed.access_token().secret(),
        tokens.access_token().secret()
    );
    // The rotated refresh token cannot be used again (reuse ends the family).
    let reused = client
        .exchange_refresh_token(tokens.refresh_token().unwrap())
        .unwrap()
        .request_async(&rp)
        .await;
    assert!(reused.is_err());
    idp.stop().await;
}
