# Administrative operations (policy reload, federation changes, user management): the admin role,
# a trusted issuer of this very instance, and multi-factor authentication. The input is the
# normalised input (docs/policy.md): `action` is the operation, `context.aal` the level.
package dive.admin

import rego.v1

settings := data.dive.settings

admin_role := settings.adminRole

default authenticated := false

authenticated if input.subject.authenticated == true

default has_role := false

has_role if admin_role in input.subject.roles

default local_issuer := false

local_issuer if data.dive.trusted_issuers[input.subject.issuer].instance == settings.instance

default mfa := false

mfa if input.context.aal >= 2

default operation_named := false

operation_named if {
	is_string(input.action)
	input.action != ""
}

default allow := false

allow if {
	authenticated
	operation_named
	has_role
	local_issuer
	mfa
}

reason := "Not authenticated: sign in and try again" if {
	not authenticated
} else := "No operation named: the request must say which admin operation it is (action.operation)" if {
	not operation_named
} else := sprintf("Admin role required: %v needs the %v role", [input.action, admin_role]) if {
	not has_role
} else := "Admin operations need a token from this instance's own identity provider" if {
	not local_issuer
} else := sprintf("Multi-factor authentication required for admin operations; you signed in at AAL%v", [input.context.aal]) if {
	not mfa
} else := sprintf("Admin operation %v allowed", [input.action])

decision := {
	"allow": allow,
	"reason": reason,
	"obligations": [],
	"evaluation_details": {
		"checks": {
			"authenticated": authenticated,
			"operation": operation_named,
			"admin_role": has_role,
			"local_issuer": local_issuer,
			"mfa": mfa,
		},
		"authentication": {"aal": sprintf("AAL%v", [input.context.aal])},
	},
}
