//! The Studio at `/studio`: its files and security headers over HTTP, then the page itself in a
//! real headless Chromium against the real server: detection by drop and by picking a file
//! (verdict, every module, the overlay, the quota left), usage that counts the `website`
//! source, and key management with the admin token (a key shown once, rotated, disabled,
//! re-tiered and revoked, and a detection with the revoked key refused). Each test saves a
//! screenshot of every page it visits in its temp folder (and in
//! `$TELLSCAN_STUDIO_SCREENSHOTS` when set).

mod common;

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::Instant;

use common::browser::Browser;
use common::server::{
    client, detect_request, form, key_id, small_jpeg, status_json, TestServer, ADMIN_TOKEN,
};
use futures_util::FutureExt;
use serde_json::{json, Value};

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_studio_files_are_served_with_a_strict_policy_and_reveal_nothing() {
    let server = TestServer::embedded().await;
    let c = client();
    let mut bodies = Vec::new();
    for (path, mime) in [
        ("/studio", "text/html; charset=utf-8"),
        ("/studio/", "text/html; charset=utf-8"),
        ("/studio/studio.js", "text/javascript; charset=utf-8"),
        ("/studio/studio.css", "text/css; charset=utf-8"),
    ] {
        let response = c.get(server.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let headers = response.headers().clone();
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        assert_eq!(header("content-type"), mime, "{path}");
        assert_eq!(header("content-security-policy"), CSP, "{path}");
        assert_eq!(header("x-content-type-options"), "nosniff", "{path}");
        assert_eq!(header("x-frame-options"), "DENY", "{path}");
        assert_eq!(header("referrer-policy"), "no-referrer", "{path}");
        assert!(header("set-cookie").is_empty(), "{path} sets a cookie");
        let etag = header("etag");
        assert!(etag.starts_with('"') && etag.len() == 18, "{path}: {etag}");
        let again = c.get(server.url(path)).header("if-none-match", &etag).send().await.unwrap();
        assert_eq!(again.status(), 304, "{path} revalidates");
        bodies.push(response.text().await.unwrap());
    }
    let html = &bodies[0];
    assert!(html.contains("<title>tellscan Studio</title>"), "{html}");
    // no inline script or handler, nothing loaded from elsewhere
    assert_eq!(html.matches("<script").count(), 1, "one script tag");
    assert!(html.contains(r#"<script src="/studio/studio.js" defer></script>"#));
    assert!(!inline_handler(html), "an inline event handler");
    for body in &bodies {
        assert!(!body.contains("http://") && !body.contains("https://") && !body.contains("//cdn"));
    }
    // the key and the token stay in memory: no storage, no cookie, no URL
    let js = &bodies[2];
    for word in
        ["localStorage", "sessionStorage", "document.cookie", "location.hash", "history.", "indexedDB"]
    {
        assert!(!js.contains(word), "studio.js mentions {word}");
    }
    // the same page for everyone: no key, no data, whatever the request carries
    let with_key = c.get(server.url("/studio")).header("x-api-key", "imag_0_0").send().await.unwrap();
    assert_eq!(with_key.text().await.unwrap(), *html);
    for path in ["/studio/keys", "/studio/../admin/keys", "/studio/studio.map"] {
        let response = c.get(server.url(path)).send().await.unwrap();
        assert_ne!(response.status(), 200, "{path}");
    }
    let post = c.post(server.url("/studio")).send().await.unwrap();
    assert_eq!(post.status(), 405);
    assert_eq!(post.headers().get("allow").and_then(|v| v.to_str().ok()), Some("GET, HEAD"));
    let head = c.head(server.url("/studio/studio.js")).send().await.unwrap();
    assert_eq!(head.status(), 200);
}

/// Whether an HTML text has an attribute like ` onclick=`.
fn inline_handler(html: &str) -> bool {
    html.split(" on").skip(1).any(|rest| {
        let name: String = rest.chars().take_while(|c| c.is_ascii_alphabetic()).collect();
        !name.is_empty() && rest[name.len()..].starts_with('=')
    })
}

/// Run `steps` in a fresh browser and always close it, also when a step fails.
async fn in_browser<F, Fut>(steps: F)
where
    F: FnOnce(Browser) -> Fut,
    Fut: Future<Output = Browser>,
{
    let browser = Browser::start().await;
    let client = browser.client.clone();
    match AssertUnwindSafe(steps(browser)).catch_unwind().await {
        Ok(browser) => browser.close().await,
        Err(panic) => {
            let _ = client.close().await;
            std::panic::resume_unwind(panic);
        }
    }
}

/// Open the Studio and wait for its script to be wired.
async fn open_studio(browser: &Browser, server: &TestServer) {
    browser.client.goto(&server.url("/studio")).await.expect("the Studio loads");
    browser.until("document.body.dataset.ready === 'yes'", "the script to start").await;
}

/// Sign in on the Detect or Usage page with an API key.
async fn sign_in_with_key(browser: &Browser, key: &str) {
    browser.type_into("api-key", key).await;
    browser.click("#key-signin").await;
}

/// The page leaves no trace of a secret outside its memory.
async fn assert_nothing_stored(browser: &Browser, secret: &str) {
    let url = browser.client.current_url().await.unwrap();
    assert!(!url.as_str().contains(secret) && url.path() == "/studio", "{url}");
    let stored =
        browser.js("return [document.cookie, localStorage.length, sessionStorage.length];", vec![]).await;
    assert_eq!(stored, json!(["", 0, 0]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_holder_drops_an_image_sees_the_verdict_and_reads_usage() {
    let started = Instant::now();
    let server = TestServer::embedded().await;
    let key = server.key("free").await;
    let dir = tempfile::tempdir().unwrap();
    let dropped = common::read_shared("fixtures/c2pa/C.jpg");
    let expected = server.state.detector.detect(&dropped).expect("the fixture is analysed");
    assert!(!expected.regions.is_empty(), "the fixture has regions to draw");
    let picked =
        common::shared("corpus/ai/comfyui/aura_flow/aura_flow_0.1_example.png").canonicalize().unwrap();

    in_browser(|b| async {
        open_studio(&b, &server).await;
        // the page weight of a first load, with an empty cache
        let weight = b
            .js(
                "return performance.getEntriesByType('navigation').concat(performance.getEntriesByType('resource'))
                    .map(e => [e.name, e.transferSize]);",
                vec![],
            )
            .await;
        let total: u64 = weight.as_array().unwrap().iter().map(|e| e[1].as_u64().unwrap()).sum();
        eprintln!("studio first load: {total} bytes transferred: {weight}");
        assert_eq!(weight.as_array().unwrap().len(), 3, "the page, its script and its style: {weight}");
        assert!(total > 10_000 && total < 80_000, "{total} bytes");

        // a detection before signing in is refused by the page, with a reason
        b.drop_file("drop", "C.jpg", "image/jpeg", &dropped).await;
        b.until("!document.getElementById('detect-error').hidden", "the sign-in hint").await;
        assert!(b.text("detect-error").await.contains("Sign in with an API key"));

        // a wrong key is refused by the server
        sign_in_with_key(&b, "imag_0123456789abcdef_nope").await;
        b.until("!document.getElementById('key-error').hidden", "the refusal").await;
        assert!(b.text("key-error").await.contains("invalid_api_key"), "{}", b.text("key-error").await);

        sign_in_with_key(&b, &key).await;
        b.until("!document.getElementById('key-who').hidden", "the signed-in line").await;
        let who = b.text("key-identity").await;
        assert!(who.contains(key_id(&key)) && who.contains("free tier"), "{who}");
        assert_nothing_stored(&b, &key).await;

        // drop the C2PA fixture
        b.drop_file("drop", "C.jpg", "image/jpeg", &dropped).await;
        b.until("document.getElementById('detect-status').textContent.includes('C.jpg: analysed')", "the report")
            .await;
        assert_eq!(b.text("score-value").await, format!("{:.1}", expected.score));
        assert_eq!(b.text("verdict").await, expected.verdict.label());
        assert_eq!(b.text("presentation").await, expected.presentation);
        assert_eq!(b.text("confidence").await, format!("{} %", (expected.confidence * 100.0).round()));
        assert_eq!(b.text("uncertainty").await, format!("{} %", (expected.uncertainty * 100.0).round()));
        let why = b.text("explanations").await;
        for line in &expected.explanations {
            assert!(why.contains(line.as_str()), "{line} missing from {why}");
        }
        let quota = b.text("quota").await;
        assert!(quota.ends_with("of 10 (resets in ") || quota.contains(" of 10 (resets in "), "{quota}");
        let modules = module_rows(&b).await;
        let names: Vec<&String> = expected.modules.keys().collect();
        assert_eq!(modules.len(), names.len(), "{modules:?}");
        for (name, module) in &expected.modules {
            let row = modules.iter().find(|r| r[0] == *name).unwrap_or_else(|| panic!("no row for {name}"));
            assert!(row[1].starts_with(&format!("{:.2}", module.score)), "{name}: {row:?}");
            assert_eq!(row[1].contains("abstained"), module.abstained, "{name}: {row:?}");
            for flag in &module.flags {
                let flag = serde_json::to_value(flag).unwrap();
                assert!(row[2].contains(flag.as_str().unwrap()), "{name}: {flag} not in {row:?}");
            }
        }
        let c2pa = b.text("c2pa").await;
        assert!(c2pa.contains("a manifest is present") && c2pa.contains("generative model"), "{c2pa}");
        let overlay = b
            .js(
                "const img = document.getElementById('preview');
                 return [img.complete && img.naturalWidth, document.querySelectorAll('#overlay .region').length,
                         Array.from(document.querySelectorAll('#overlay .region')).every(r => r.offsetWidth > 0 && r.offsetHeight > 0)];",
                vec![],
            )
            .await;
        assert_eq!(overlay, json!([expected.image.width, expected.regions.len(), true]), "image and overlay");
        b.screenshot(dir.path(), "detect-drop").await;

        // pick a file with the file chooser: a ComfyUI render, attributed to its generator
        let chooser = b.client.find(fantoccini::Locator::Id("file")).await.unwrap();
        chooser.send_keys(picked.to_str().unwrap()).await.expect("the file is chosen");
        b.until(
            "document.getElementById('detect-status').textContent.includes('aura_flow_0.1_example.png: analysed')",
            "the second report",
        )
        .await;
        let generator = b.text("generator").await;
        assert!(generator.contains("auraflow") && generator.contains("ComfyUI"), "{generator}");
        assert_eq!(b.text("c2pa").await, "No C2PA manifest.");
        b.screenshot(dir.path(), "detect").await;

        // usage counts both detections under the `website` source
        b.click("#tab-usage").await;
        b.until("document.querySelector('#sources tr[data-source=website]')", "the usage").await;
        b.until("document.getElementById('windows').textContent.includes('2 used of 50')", "the day window")
            .await;
        let website = b.js(
            "return Array.from(document.querySelectorAll('#sources tr[data-source=website] td')).map(td => td.textContent);",
            vec![],
        )
        .await;
        assert_eq!(website, json!(["2", "2"]), "today and this month");
        let api = b.js(
            "return Array.from(document.querySelectorAll('#sources tr[data-source=api] td')).map(td => td.textContent);",
            vec![],
        )
        .await;
        assert_eq!(api, json!(["0", "0"]));
        let windows = b.text("windows").await;
        assert!(windows.contains("This minute") && windows.contains("of 1000") && windows.contains("resets at"), "{windows}");
        assert_nothing_stored(&b, &key).await;
        b.screenshot(dir.path(), "usage").await;
        b
    })
    .await;
    for shot in ["detect-drop", "detect", "usage"] {
        assert!(dir.path().join(format!("{shot}.png")).is_file());
    }
    eprintln!("browser test (detect + usage) took {:.1} s", started.elapsed().as_secs_f64());
}

/// The text of every cell of the modules table, a row per module.
async fn module_rows(b: &Browser) -> Vec<Vec<String>> {
    let rows = b
        .js(
            "return Array.from(document.querySelectorAll('#modules tbody tr'))
                .map(tr => Array.from(tr.children).map(c => c.textContent.trim()));",
            vec![],
        )
        .await;
    serde_json::from_value(rows).unwrap()
}

/// The cells of the keys table's row of `id`, by column name.
async fn key_row(b: &Browser, id: &str) -> Value {
    b.js(
        "const tr = document.querySelector(`#keys tr[data-key='${arguments[0]}']`);
         if (!tr) return null;
         const c = Array.from(tr.children).map(td => td.textContent.trim());
         return { name: c[1], tier: c[2], state: c[3], account: c[4], created: c[5], rotated: c[6], used: c[7] };",
        vec![json!(id)],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_creates_a_key_sees_it_once_and_revokes_it() {
    let started = Instant::now();
    let server = TestServer::embedded().await;
    let dir = tempfile::tempdir().unwrap();
    let existing = server.key("enterprise").await;

    in_browser(|b| async {
        open_studio(&b, &server).await;
        b.click("#tab-keys").await;
        assert!(!b.visible("key-session").await, "the key sign-in is not on the Keys page");

        b.type_into("admin-token", "not-the-token").await;
        b.click("#admin-signin").await;
        b.until("!document.getElementById('admin-error').hidden", "the refusal").await;
        assert!(b.text("admin-error").await.contains("invalid_admin_token"));

        b.type_into("admin-token", ADMIN_TOKEN).await;
        b.click("#admin-signin").await;
        b.until("!document.getElementById('admin').hidden", "the keys").await;
        assert_nothing_stored(&b, ADMIN_TOKEN).await;
        let listed = key_row(&b, key_id(&existing)).await;
        assert_eq!(listed["tier"], "enterprise", "{listed}");
        assert_eq!(listed["state"], "active", "{listed}");
        assert_eq!(listed["rotated"], "—");
        assert!(listed["created"].as_str().unwrap().ends_with(" UTC"), "{listed}");

        // create: the key is shown once, with a copy button and the warning
        b.type_into("new-name", "browser test").await;
        b.client.find(fantoccini::Locator::Id("new-tier")).await.unwrap().clear().await.unwrap();
        b.type_into("new-tier", "premium").await;
        b.click("#create-key").await;
        b.until("!document.getElementById('once').hidden", "the new key").await;
        let once = b.text("once").await;
        assert!(once.contains("You will not see it again"), "{once}");
        let key = b.text("once-key").await;
        assert!(key.starts_with("imag_"), "{key}");
        let id = key_id(&key).to_string();
        b.click("#once-copy").await;
        b.until("document.getElementById('once-copied').textContent !== ''", "the copy").await;
        b.until(&format!("document.querySelector(\"#keys tr[data-key='{id}']\")"), "the new row").await;
        let row = key_row(&b, &id).await;
        assert_eq!((row["name"].as_str(), row["tier"].as_str(), row["state"].as_str()), (Some("browser test"), Some("premium"), Some("active")));
        b.screenshot(dir.path(), "keys-created").await;
        b.click("#once-done").await;
        assert!(!b.visible("once").await);
        assert_eq!(b.text("once-key").await, "", "the key is gone from the page");
        let page = b.js("return document.documentElement.outerHTML;", vec![]).await;
        assert!(!page.as_str().unwrap().contains(&key), "the key stays nowhere in the page");

        // the new key works
        let (status, body) = detect_with(&server, &key).await;
        assert_eq!(status, 200, "{body}");

        // rotate: a new secret shown once, the old one refused
        b.click(&format!("#keys tr[data-key='{id}'] button")).await; // Rotate is first
        b.until("!document.getElementById('once').hidden", "the rotated key").await;
        let rotated = b.text("once-key").await;
        assert!(rotated.starts_with(&format!("imag_{id}_")) && rotated != key, "{rotated}");
        b.click("#once-done").await;
        b.until(&format!("document.querySelector(\"#keys tr[data-key='{id}'] td:nth-child(7)\").textContent !== '—'"), "the rotation time").await;
        let (status, body) = detect_with(&server, &key).await;
        assert_eq!((status, body["error"].as_str()), (401, Some("invalid_api_key")), "{body}");
        let key = rotated;

        // disable, enable and re-tier
        click_in_row(&b, &id, "Disable").await;
        b.until(&state_is(&id, "disabled"), "disabled").await;
        click_in_row(&b, &id, "Enable").await;
        b.until(&state_is(&id, "active"), "enabled").await;
        let tier = format!("#keys tr[data-key='{id}'] input.tier");
        b.client.find(fantoccini::Locator::Css(&tier)).await.unwrap().clear().await.unwrap();
        b.client.find(fantoccini::Locator::Css(&tier)).await.unwrap().send_keys("enterprise").await.unwrap();
        click_in_row(&b, &id, "Set tier").await;
        b.until(&format!("document.querySelector(\"#keys tr[data-key='{id}'] .tier-name\").textContent === 'enterprise'"), "the new tier").await;
        // an unknown tier is refused with the server's reason
        b.client.find(fantoccini::Locator::Css(&tier)).await.unwrap().clear().await.unwrap();
        b.client.find(fantoccini::Locator::Css(&tier)).await.unwrap().send_keys("gold").await.unwrap();
        click_in_row(&b, &id, "Set tier").await;
        b.until("!document.getElementById('admin-error').hidden", "the refusal").await;
        assert!(b.text("admin-error").await.contains("gold"), "{}", b.text("admin-error").await);

        // sign in with the key on the Detect page, then revoke it (two clicks) on the Keys page
        b.click("#tab-detect").await;
        sign_in_with_key(&b, &key).await;
        b.until("!document.getElementById('key-who').hidden", "the signed-in line").await;
        b.click("#tab-keys").await;
        click_in_row(&b, &id, "Revoke").await;
        assert_eq!(key_row(&b, &id).await["state"], "active", "one click only arms the button");
        click_in_row(&b, &id, "Confirm revoke").await;
        b.until(&state_is(&id, "revoked"), "revoked").await;
        let actions = b.js(&format!("return document.querySelectorAll(\"#keys tr[data-key='{id}'] button\").length;"), vec![]).await;
        assert_eq!(actions, json!(0), "a revoked key has no actions left");
        b.screenshot(dir.path(), "keys").await;

        // a detection with the revoked key is refused, in the page and over the API
        b.click("#tab-detect").await;
        b.drop_file("drop", "C.jpg", "image/jpeg", &common::read_shared("fixtures/c2pa/C.jpg")).await;
        b.until("!document.getElementById('detect-error').hidden", "the refusal").await;
        let refused = b.text("detect-error").await;
        assert!(refused.contains("revoked_api_key") && refused.contains("HTTP 401"), "{refused}");
        b.screenshot(dir.path(), "detect-refused").await;
        let (status, body) = detect_with(&server, &key).await;
        assert_eq!((status, body["error"].as_str()), (401, Some("revoked_api_key")), "{body}");
        b
    })
    .await;
    eprintln!("browser test (keys) took {:.1} s", started.elapsed().as_secs_f64());
}

/// A JavaScript condition: the row of `id` shows `state`.
fn state_is(id: &str, state: &str) -> String {
    format!("document.querySelector(\"#keys tr[data-key='{id}'] .state\").textContent === '{state}'")
}

/// Click the button labelled `label` in the row of key `id`.
async fn click_in_row(b: &Browser, id: &str, label: &str) {
    let clicked = b
        .js(
            "const b = Array.from(document.querySelectorAll(`#keys tr[data-key='${arguments[0]}'] button`))
                .find(b => b.textContent === arguments[1]);
             if (b) b.click();
             return Boolean(b);",
            vec![json!(id), json!(label)],
        )
        .await;
    assert_eq!(clicked, json!(true), "no {label} button for {id}");
}

/// A detection over the API with a small JPEG: status and body.
async fn detect_with(server: &TestServer, key: &str) -> (u16, Value) {
    let form = form(small_jpeg(), "small.jpg", None);
    status_json(detect_request(server, Some(key), None, form).send().await.unwrap()).await
}
