# Countersign's default policy: what the demo runs, and a starting point for your own.
#
# Input:  input.action    the agent's request (type, resource, environment, parameters,
#                         justification, context, diff, tags, on_behalf_of)
#         input.requester the agent identity that submitted it
# Output: data.countersign.decision, one object:
#         {"outcome": "allow" | "deny" | "require_approval", "reason": "...",
#          and for require_approval: "quorum", "groups", "ttl_seconds",
#          "require_hardware_key", "quick_approve"}
#         data.countersign.risk (optional): {"level": "low" | "medium" | "high" | "critical",
#          "reasons": ["..."]}, judged from the request's facts (its diff and parameters, where
#          it runs), never from the agent's description of itself; shown to approvers in words,
#          and a high or critical risk is never approved from a notification.
# Anything else (an error, no decision, a malformed one) denies the request.
package countersign

import rego.v1

# Environments are compared as lower case without surrounding spaces, and anything that is
# not a known non-production name is production: "prd", "live" or a typo gets production's
# rules, never fewer.
environment := lower(trim_space(input.action.environment))

non_production := {"dev", "development", "test", "testing", "qa", "staging", "stage", "sandbox", "local", "demo", "preview"}

is_prod if not environment in non_production

is_read if {
	some suffix in {".read", ".get", ".list", ".describe"}
	endswith(input.action.type, suffix)
}

has_tag(t) if t in input.action.tags

# A statement the gate brokers (type sql.<kind>) carries the tags of the classified columns it
# touches, set by the gate's configuration, and says whether it asks for them unmasked.
is_sql if startswith(input.action.type, "sql.")

reveals if input.action.parameters.reveal_classified == true

# --- Risk, from facts ------------------------------------------------------------------------
#
# The facts are what the action would change or send: the lines a unified diff adds, the
# "after" of a before/after diff, and the parameters (as JSON). The justification, tags and
# type are the agent's words and do not lower anything.

added_lines contains line if {
	some line in split(input.action.diff.text, "\n")
	startswith(line, "+")
	not startswith(line, "+++")
}

added_lines contains input.action.diff.after if input.action.diff.after

facts := concat("\n", array.concat([json.marshal(object.get(input.action, "parameters", {}))], [l | some l in added_lines]))

risk_reasons contains "opens a network range to the whole internet (0.0.0.0/0 or ::/0)" if {
	regex.match(`(^|[^0-9.])0\.0\.0\.0/0|(^|[^0-9a-fA-F:])::/0`, facts)
}

risk_reasons contains "grants every action (a wildcard IAM permission)" if {
	regex.match(`(?i)"?(not)?actions?"?\s*[:=]\s*\[?\s*\\?"(\*|[a-z0-9-]+:\*)\\?"`, facts)
}

risk_reasons contains sprintf("touches %d rows", [rows]) if {
	some key in {"rows", "row_count", "limit"}
	rows := input.action.parameters[key]
	is_number(rows)
	rows >= 10000
}

risk_reasons contains "reads classified columns unmasked" if {
	is_sql
	reveals
}

risk_reasons contains "touches personal data (pii)" if has_tag("pii")

risk_reasons contains "changes permissions (IAM)" if startswith(input.action.type, "iam.")

risk_reasons contains sprintf("runs in production (environment %q)", [input.action.environment]) if is_prod

critical if {
	some reason in risk_reasons
	some marker in {"whole internet", "wildcard IAM"}
	contains(reason, marker)
}

high if {
	is_prod
	some reason in risk_reasons
	some marker in {"rows", "classified", "personal data", "permissions"}
	contains(reason, marker)
}

risk_level := "critical" if critical
else := "high" if high
else := "medium" if is_prod
else := "low"

risk := {"level": risk_level, "reasons": sort([r | some r in risk_reasons])}

# Flat refusals come first.
decision := {"outcome": "deny", "reason": "exporting credentials is never allowed"} if {
	startswith(input.action.type, "db.export")
	has_tag("credentials")
} else := {"outcome": "deny", "reason": "statements touching credentials are never brokered"} if {
	is_sql
	has_tag("credentials")
} else := {
	"outcome": "require_approval",
	"reason": "opening a system to the internet or granting every action needs one approver from security",
	"quorum": 1, "groups": ["security"], "ttl_seconds": 900,
	"require_hardware_key": false, "quick_approve": false,
} if {
	critical
} else := {
	"outcome": "require_approval",
	"reason": "reading personal data unmasked needs two approvers from security",
	"quorum": 2, "groups": ["security"], "ttl_seconds": 900,
	"require_hardware_key": false, "quick_approve": false,
} if {
	is_sql
	reveals
	has_tag("pii")
} else := {
	"outcome": "require_approval",
	"reason": "production export of personal data needs two approvers from security",
	"quorum": 2, "groups": ["security"], "ttl_seconds": 900,
	"require_hardware_key": false, "quick_approve": false,
} if {
	startswith(input.action.type, "db.export")
	is_prod
	has_tag("pii")
} else := {
	"outcome": "require_approval",
	"reason": "IAM changes in production need one approver from security",
	"quorum": 1, "groups": ["security"], "ttl_seconds": 900,
	"require_hardware_key": false, "quick_approve": false,
} if {
	startswith(input.action.type, "iam.")
	is_prod
} else := {"outcome": "allow", "reason": "read-only actions are allowed"} if {
	is_read
} else := {"outcome": "allow", "reason": "queries with classified values masked are allowed"} if {
	input.action.type == "sql.select"
	not reveals
	not is_prod
} else := {
	"outcome": "require_approval",
	"reason": "feature flags outside production with nothing risky in them may be approved straight from the notification",
	"quorum": 1, "groups": [], "ttl_seconds": 600,
	"require_hardware_key": false, "quick_approve": true,
} if {
	# Never on the type alone: what the flag change does must show no risk either.
	startswith(input.action.type, "flag.")
	risk_level == "low"
	count(risk_reasons) == 0
} else := {
	"outcome": "require_approval",
	"reason": "production changes need one approver",
	"quorum": 1, "groups": [], "ttl_seconds": 900,
	"require_hardware_key": false, "quick_approve": false,
} if {
	is_prod
} else := {
	"outcome": "require_approval",
	"reason": "every privileged action needs one approver",
	"quorum": 1, "groups": [], "ttl_seconds": 1800,
	"require_hardware_key": false, "quick_approve": false,
}
