# Session and token lifetime guardrails: a token or session outside the instance's limits is
# refused even if its signature is valid (access token ≤ 15 min, SSO idle ≤ 15 min, max 8 h).
package dive.guardrails

import rego.v1

# The PDP fills in the documented defaults (900 s, 900 s, 8 h) for limits settings.json omits.
limits := data.dive.settings.guardrails

max_token := limits.accessTokenMaxSeconds

max_idle := limits.ssoIdleMaxSeconds

max_session := limits.ssoSessionMaxSeconds

# Decide as of `context.currentTime` (RFC 3339) when the caller fixes it, else now.
now_ns := time.parse_rfc3339_ns(input.context.currentTime) if {
	is_string(input.context.currentTime)
} else := time.now_ns()

now_s := now_ns / 1000000000

violations contains msg if {
	is_number(input.token.iat)
	is_number(input.token.exp)
	input.token.exp - input.token.iat > max_token
	msg := sprintf("access token lifetime %vs exceeds the %vs limit", [input.token.exp - input.token.iat, max_token])
}

violations contains msg if {
	is_number(input.token.exp)
	now_s >= input.token.exp
	msg := "access token has expired"
}

violations contains msg if {
	is_number(input.session.auth_time)
	now_s - input.session.auth_time > max_session
	msg := sprintf("session started %vs ago, beyond the %vs maximum: sign in again", [round(now_s - input.session.auth_time), max_session])
}

violations contains msg if {
	is_number(input.session.last_activity)
	now_s - input.session.last_activity > max_idle
	msg := sprintf("session idle for %vs, beyond the %vs limit: sign in again", [round(now_s - input.session.last_activity), max_idle])
}

violations contains "nothing to check: provide token {iat, exp} and/or session {auth_time, last_activity}" if {
	not is_object(input.token)
	not is_object(input.session)
}

violations contains msg if {
	some section in ["token", "session"]
	some field, value in object.get(input, section, {})
	field in {"iat", "exp", "auth_time", "last_activity"}
	not is_number(value)
	msg := sprintf("%v.%v must be seconds since the epoch", [section, field])
}

allow := count(violations) == 0

reason := "Within session and token lifetime limits" if {
	allow
} else := sprintf("Lifetime guardrail: %v", [concat("; ", sort(violations))])

decision := {
	"allow": allow,
	"reason": reason,
	"obligations": [],
	"evaluation_details": {"violations": sort(violations), "limits": {"accessTokenMaxSeconds": max_token, "ssoIdleMaxSeconds": max_idle, "ssoSessionMaxSeconds": max_session}},
}
