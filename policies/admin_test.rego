package dive.admin_test

import rego.v1

import data.dive.admin

admin_input := {
	"subject": {"authenticated": true, "uniqueID": "admin-usa", "roles": ["dive-admin"], "issuer": "https://localhost:8443/realms/dive-usa"},
	"action": {"operation": "policy.reload"},
	"context": {"acr": "2", "amr": ["pwd", "otp"]},
}

test_admin_allowed_with_role_and_mfa if {
	d := admin.decision with input as admin_input
	d.allow
}

test_admin_role_required if {
	d := admin.decision with input as object.union(admin_input, {"subject": object.union(admin_input.subject, {"roles": ["dive-user"]})})
	not d.allow
	startswith(d.reason, "Admin role required")
}

test_admin_needs_mfa if {
	d := admin.decision with input as object.union(admin_input, {"context": {"acr": "1", "amr": ["pwd"]}})
	not d.allow
	startswith(d.reason, "Multi-factor")
}

test_admin_from_partner_issuer_refused if {
	d := admin.decision with input as object.union(admin_input, {"subject": object.union(admin_input.subject, {"issuer": "https://localhost:8444/realms/dive-fra"})})
	not d.allow
}
