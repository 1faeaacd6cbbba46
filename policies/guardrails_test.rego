package dive.guardrails_test

import rego.v1

import data.dive.guardrails

now := "2026-06-01T00:00:00Z"

now_s := 1780272000

test_fresh_session_allowed if {
	d := guardrails.decision with input as {"token": {"iat": now_s - 60, "exp": now_s + 840}, "session": {"auth_time": now_s - 3600, "last_activity": now_s - 60}, "context": {"currentTime": now}}
	d.allow
}

test_long_lived_token_refused if {
	d := guardrails.decision with input as {"token": {"iat": now_s - 60, "exp": now_s + 3540}, "context": {"currentTime": now}}
	not d.allow
	contains(d.reason, "access token lifetime 3600s exceeds the 900s limit")
}

test_idle_session_refused if {
	d := guardrails.decision with input as {"session": {"auth_time": now_s - 3600, "last_activity": now_s - 1000}, "context": {"currentTime": now}}
	contains(d.reason, "idle")
}

test_session_beyond_max_refused if {
	d := guardrails.decision with input as {"session": {"auth_time": now_s - 30000}, "context": {"currentTime": now}}
	contains(d.reason, "beyond the 28800s maximum")
}

test_empty_input_refused if {
	d := guardrails.decision with input as {}
	not d.allow
}
