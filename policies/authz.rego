# DIVE's access decision: default deny; allow only when all twelve checks pass. The reason for a
# deny is the most important failing check (see `reason`), phrased so that a user can act on it.
#
# The input is the *normalised* input built by the PDP in Rust from the raw request (national
# labels already mapped to DIVE levels and ranks, country codes validated, timestamps in Unix
# nanoseconds, the AAL derived from acr/amr, COI registry facts computed, every attribute problem
# listed in `facts.attributeErrors`). Its shape is documented in docs/policy.md ("Normalised
# input"); `dive policy eval --normalized` prints it for any raw input.
#
# Every check is computed once, as a local of the one body of `evaluation`, which also builds the
# evaluation details and obligations: regorus pays for every rule call, function call and VM
# instruction, and this shape keeps an uncached decision in the tens of microseconds. An allowed
# decision evaluates `evaluation` and `coi_ok` only; the reason chain runs for denies.
package dive.authz

import rego.v1

evaluation := {
	"checks": checks,
	"allow": allow,
	"details": {
		"checks": checks,
		"subject": s,
		"resource": r,
		"authentication": {"aal": aal_names[ctx.aal], "required": aal_names[required_aal]},
	},
	"obligations": obligations,
	"required_aal": required_aal,
	"industry_cap": industry_cap,
	"issuer_instance": issuer_instance,
	"coherence_violations": violations,
} if {
	s := input.subject
	r := input.resource
	ctx := input.context
	f := input.facts
	settings := data.dive.settings
	aal_names := ["AAL0", "AAL1", "AAL2", "AAL3"]

	# Ranks: UNCLASSIFIED 0 … TOP_SECRET 4; an unknown clearance is -1 (clears nothing), an
	# unknown classification 5 (cleared by nobody).
	cleared := s.rank >= r.rank
	releasable := s.countryOfAffiliation in r.releasabilityTo

	# The AAL a document needs, by rank: AAL2 above UNCLASSIFIED; AAL3 for TOP_SECRET (and
	# unknown) when the instance requires it. Two constant tables: one lookup, no array built.
	required_aal := {
		false: [1, 2, 2, 2, 2, 2],
		true: [1, 2, 2, 2, 3, 3],
	}[settings.requireAal3ForTopSecret][r.rank]

	# Not embargoed: no creation time, or now is past it (less the skew). to_number(null) is 0,
	# so the comparison is defined, and ignored, when there is none.
	embargo := true in [
		r.creationTime == null,
		ctx.now >= to_number(r.creationTime) - (settings.embargoSkewSeconds * 1000000000),
	]

	industry_cap := object.get(data.dive.industry_caps.caps, s.countryOfAffiliation, data.dive.industry_caps["default"])
	issuer_instance := object.get(data.dive.trusted_issuers, [s.issuer, "instance"], null)
	partners := object.get(data.dive.federation, settings.instance, [])

	# Label coherence problems found by the normaliser, plus strict mode's coverage rule.
	strict := [msg |
		settings.strictCoherence
		some c in f.uncoveredCountries
		msg := sprintf("strict mode: releasable country %v belongs to none of the label's COIs", [c])
	]
	violations := array.concat(f.coherenceViolations, strict)

	# "A or B" is written `true in [A, B]` and "A and B" `[A, B] == [true, true]`.
	authenticated := s.authenticated
	# Lists are compared with [] rather than counted: a builtin call costs the VM more.
	attributes := f.attributeErrors == []
	strength := ctx.aal >= required_aal

	# Not an upload, or releasable to the uploader's own country within their clearance.
	upload := true in [input.action != "upload", [releasable, cleared] == [true, true]]
	coi := coi_ok

	# Only a caller that verified the ZTDF reports integrity; a failed report denies.
	integrity := ctx.integrityVerified != false

	# Not industry, or a document releasable to industry within the nation's cap.
	industry := true in [
		s.organizationType != "INDUSTRY",
		[r.releasableToIndustry, r.rank <= data.dive.levels[industry_cap]] == [true, true],
	]
	violation_count := count(violations)
	coherence := violation_count == 0
	trusted := issuer_instance != null

	# The issuer's instance is this instance or one federated with it.
	federation := true in [issuer_instance == settings.instance, issuer_instance in partners]

	checks := {
		"authenticated": authenticated,
		"attributes": attributes,
		"clearance": cleared,
		"authentication_strength": strength,
		"upload": upload,
		"releasability": releasable,
		"coi": coi,
		"embargo": embargo,
		"integrity": integrity,
		"industry": industry,
		"coherence": coherence,
		"coherence_violations": violation_count,
		"trusted_issuer": trusted,
		"federation": federation,
	}

	# Allow only when every check passed.
	allow := [
		authenticated, attributes, cleared, strength, upload, releasable, coi,
		embargo, integrity, industry, coherence, trusted, federation,
	] == [true, true, true, true, true, true, true, true, true, true, true, true, true]

	# An encrypted (ZTDF) document is released by the KAS, which decides again. (A comprehension
	# builds the obligation only when there is one.)
	obligations := [o |
		[allow, r.encrypted] == [true, true]
		o := {
			"type": "kas_key_release",
			"resourceId": r.resourceId,
			"reason": "encrypted ZTDF document: the KAS releases the data key only after it re-evaluates this policy",
		}
	]
}

# Communities of interest: a US-ONLY document needs the subject's tags to be exactly [US-ONLY];
# otherwise under ALL every tag must be held, under ANY one of them (none when the document lists
# none). An invalid operator never passes.
coi_ok := false if {
	not input.resource.coiOperator in {"ALL", "ANY"}
} else := input.subject.acpCOI == ["US-ONLY"] if {
	"US-ONLY" in input.resource.COI
} else := input.facts.coiMissing == [] if {
	input.resource.coiOperator == "ALL"
} else := input.facts.coiHeld != [] if {
	input.resource.COI != []
} else := true

# Why a denied decision is denied: the most important failing check, in the reference's priority
# order (not evaluation order).
reason := "Not authenticated: sign in and try again" if {
	not evaluation.checks.authenticated
} else := msg if {
	not evaluation.checks.attributes
	msg := sprintf("Invalid or missing attributes: %v", [concat("; ", input.facts.attributeErrors)])
} else := msg if {
	not evaluation.checks.clearance
	msg := sprintf("Insufficient clearance: your clearance %v is below the document's classification %v", [input.subject.clearance, input.resource.classification])
} else := msg if {
	not evaluation.checks.authentication_strength
	msg := sprintf("Stronger authentication required: %v documents need AAL%v and you signed in at AAL%v; sign in again with %v", [input.resource.classification, evaluation.required_aal, input.context.aal, aal_hint])
} else := msg if {
	not evaluation.checks.upload
	msg := upload_reason
} else := msg if {
	not evaluation.checks.releasability
	msg := sprintf("Not releasable to your country: %v is not in the document's releasability list %v", [input.subject.countryOfAffiliation, input.resource.releasabilityTo])
} else := msg if {
	not evaluation.checks.coi
	msg := coi_reason
} else := msg if {
	not evaluation.checks.embargo
	msg := sprintf("Embargoed: the document is not available before %v", [input.resource.creationDate])
} else := "Integrity check failed: the document's content or policy binding has been altered; do not use it and report it" if {
	not evaluation.checks.integrity
} else := msg if {
	not evaluation.checks.industry
	msg := industry_reason
} else := msg if {
	not evaluation.checks.coherence
	msg := sprintf("Incoherent security label (%v); ask the originator to correct the label", [concat("; ", sort(evaluation.coherence_violations))])
} else := msg if {
	not evaluation.checks.trusted_issuer
	msg := sprintf("Untrusted token issuer %v: this instance does not accept tokens from it", [json.marshal(input.subject.issuer)])
} else := msg if {
	not evaluation.checks.federation
	msg := sprintf("No federation agreement: instance %v is not federated with %v", [evaluation.issuer_instance, data.dive.settings.instance])
} else := "Access denied"

aal_hint := "a hardware security key (AAL3)" if {
	evaluation.required_aal == 3
} else := "a second factor such as a one-time code (AAL2)"

upload_reason := sprintf("Upload refused: the document must be releasable to your own country %v", [input.subject.countryOfAffiliation]) if {
	not input.subject.countryOfAffiliation in input.resource.releasabilityTo
} else := sprintf("Upload refused: the document's classification %v is above your clearance %v", [input.resource.classification, input.subject.clearance])

coi_reason := "Community of interest: a US-ONLY document needs your COI tags to be exactly [US-ONLY]" if {
	"US-ONLY" in input.resource.COI
} else := sprintf("Community of interest: the document requires at least one of %v; your COIs are %v", [input.resource.COI, input.subject.acpCOI]) if {
	input.resource.coiOperator == "ANY"
} else := sprintf("Community of interest: the document requires all of %v; you are missing %v", [input.resource.COI, input.facts.coiMissing])

industry_reason := "Industry access: the document is not releasable to industry" if {
	not input.resource.releasableToIndustry
} else := sprintf("Industry access: the document's classification %v is above the industry cap %v for %v", [input.resource.classification, evaluation.industry_cap, input.subject.countryOfAffiliation])

# Allowed: no reason to look for. Denied: the most important failing check.
decision := {
	"allow": true,
	"reason": "Access granted: all conditions are met",
	"obligations": e.obligations,
	"evaluation_details": e.details,
} if {
	e := evaluation
	e.allow
} else := {
	"allow": false,
	"reason": reason,
	"obligations": [],
	"evaluation_details": evaluation.details,
}
