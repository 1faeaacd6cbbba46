# Unit tests of the admin policy (normalised input: `action` is the operation, `context.aal` the
# authentication level): run with `dive policy test policies/`.
package dive.admin_test

import rego.v1

import data.dive.admin

admin_input := {
	"subject": {"authenticated": true, "uniqueID": "admin-usa", "roles": ["dive-admin"], "issuer": "https://localhost:8443/realms/dive-usa"},
	"action": "policy.reload",
	"context": {"aal": 2},
}

test_admin_allowed_with_role_and_mfa if {
	d := admin.decision with input as admin_input
	d.allow
	d.reason == "Admin operation policy.reload allowed"
}

test_admin_role_required if {
	d := admin.decision with input as object.union(admin_input, {"subject": object.union(admin_input.subject, {"roles": ["dive-user"]})})
	not d.allow
	d.reason == "Admin role required: policy.reload needs the dive-admin role"
}

test_admin_needs_mfa if {
	d := admin.decision with input as object.union(admin_input, {"context": {"aal": 1}})
	not d.allow
	startswith(d.reason, "Multi-factor")
}

test_admin_needs_an_operation if {
	d := admin.decision with input as object.union(admin_input, {"action": null})
	startswith(d.reason, "No operation named")
}

test_admin_from_partner_issuer_refused if {
	d := admin.decision with input as object.union(admin_input, {"subject": object.union(admin_input.subject, {"issuer": "https://localhost:8444/realms/dive-fra"})})
	not d.allow
	startswith(d.reason, "Admin operations need a token from this instance")
}
