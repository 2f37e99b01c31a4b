//! The Me page: the pages one received (from the incidents' timelines), one's shifts and
//! feed, one's sessions; ending one of them ends only it, and only its owner can.

use std::time::Duration;

use reqwest::StatusCode;

use super::{field, paged, policy, sign_in, submit, HOSTILE};
use crate::console::{csrf, page};
use crate::helpers::*;

#[tokio::test(flavor = "multi_thread")]
async fn me_lists_pages_received_and_sessions_and_ending_one_ends_only_it() {
    let ntfy = fake_vendor(200).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = policy(dir.path(), &ntfy, "[alice]");
    let relay = TestRelay::start_self_linked(&policy, &dir.path().join("data")).await;
    assert_eq!(relay.webhook(&webhook(HOSTILE, "firing")).await.0, 200);
    eventually("alice paged", Duration::from_secs(10), || async {
        (paged(&ntfy, "alice-phone", HOSTILE).await == 1).then_some(())
    })
    .await;
    let agent = format!("Phone {}{}", "<script>alert(2)</script>", "z".repeat(400));
    let phone = sign_in(&relay, &ntfy, "alice", "alice-phone", &agent).await;
    let laptop = sign_in(&relay, &ntfy, "alice", "alice-phone", "Laptop browser").await;
    let bob = sign_in(&relay, &ntfy, "bob", "bob-phone", "Bob's browser").await;

    let me = eventually("the page in Me", Duration::from_secs(10), || async {
        let (_, html) = page(&relay, "/me", &laptop).await;
        html.contains("Pages I received in the last 30 days (1)")
            .then_some(html)
    })
    .await;
    assert!(
        me.contains("&#60;script&#62;alert(1)&#60;/script&#62;: The gateway answers"),
        "the incident's title: {me}"
    );
    assert!(me.contains("firing: attempt 1"), "{me}");
    assert!(
        !me.contains("<script>alert"),
        "markup from an alert or a browser"
    );
    assert!(
        me.contains("href=\"/schedules/primary\"") && me.contains("My shifts in the next 30 days"),
        "{me}"
    );
    assert!(
        me.contains(&format!(
            "href=\"{}/calendar/person-alice.ics?token=",
            relay.url
        )),
        "{me}"
    );
    assert!(
        me.contains("Phone &#60;script&#62;alert(2)&#60;/script&#62;zzz"),
        "{me}"
    );
    assert!(
        !me.contains(&"z".repeat(200)),
        "a browser's name is kept short"
    );
    assert!(
        me.contains("Laptop browser <span class=\"badge\">this browser</span>"),
        "{me}"
    );
    assert!(
        !me.contains("Bob&#39;s browser") && !me.contains("Bob's browser"),
        "only alice's sessions"
    );
    let phone_at = me.find("Phone &#60;script").expect("the phone's session");
    let phone_hash = field(&me, phone_at, "session");
    let laptop_hash = field(&me, me.find("Laptop browser").expect("laptop"), "session");

    // Bob cannot end alice's session, even with his own valid form.
    let (_, bobs) = page(&relay, "/me", &bob).await;
    let (status, _, _) = submit(
        &relay,
        "/me/sessions/revoke",
        &bob,
        &relay.url,
        &[("csrf", &csrf(&bobs)), ("session", &phone_hash)],
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let token = csrf(&me);
    let (status, _, _) = submit(
        &relay,
        "/me/sessions/revoke",
        &laptop,
        &relay.url,
        &[("session", &phone_hash)],
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "no form token");
    let (status, _, _) = submit(
        &relay,
        "/me/sessions/revoke",
        &laptop,
        "https://evil.example",
        &[("csrf", &token), ("session", &phone_hash)],
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "another site");
    assert_eq!(
        page(&relay, "/", &phone).await.0,
        StatusCode::OK,
        "still signed in"
    );

    let (status, location, _) = submit(
        &relay,
        "/me/sessions/revoke",
        &laptop,
        &relay.url,
        &[("csrf", &token), ("session", &phone_hash)],
    )
    .await;
    assert_eq!(
        (status, location.as_str()),
        (StatusCode::SEE_OTHER, "/me?done=revoked")
    );
    assert_eq!(
        page(&relay, "/", &phone).await.0,
        StatusCode::SEE_OTHER,
        "the phone is signed out"
    );
    assert_eq!(
        page(&relay, "/", &bob).await.0,
        StatusCode::OK,
        "bob is not"
    );
    let (status, me) = page(&relay, "/me?done=revoked", &laptop).await;
    assert_eq!(status, StatusCode::OK, "the laptop is not");
    assert!(
        me.contains("Done: that session is signed out.") && !me.contains("Phone &#60;"),
        "{me}"
    );

    // Ending the session in use signs this browser out.
    let (status, location, _) = submit(
        &relay,
        "/me/sessions/revoke",
        &laptop,
        &relay.url,
        &[("csrf", &token), ("session", &laptop_hash)],
    )
    .await;
    assert_eq!(
        (status, location.as_str()),
        (StatusCode::SEE_OTHER, "/signin")
    );
    assert_eq!(page(&relay, "/me", &laptop).await.0, StatusCode::SEE_OTHER);
}
