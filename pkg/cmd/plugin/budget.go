package plugin

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/intstr"

	"stargate.io/stargate/pkg/apis/stargate/v1alpha1"
	planning "stargate.io/stargate/pkg/campaign"
)

// The keys of spec.failurePolicy.maxFailures.
const (
	budgetGlobal        = "global"
	budgetPerDatacenter = "perDatacenter"
	budgetPerWave       = "perWave"
)

// budgetTrip is one failure budget that the failures so far exceed.
type budgetTrip struct {
	// key is the budget's field in spec.failurePolicy.maxFailures.
	key string
	// scope is where it tripped: "global", "datacenter dc-east", "a wave".
	scope string
	// failed is the failures in the scope; for a wave, the Campaign's
	// (status counts no failures per wave): an upper bound.
	failed int
	// members is the scope's size, 0 for a wave (unknown).
	members int
	// budget is the budget's current value.
	budget *intstr.IntOrString
}

// text is "datacenter dc-east: 3 failed of 1250, budget 2".
func (t budgetTrip) text() string {
	if t.key == budgetPerWave {
		return fmt.Sprintf("a wave: perWave budget %s; status counts no failures per wave (%d failed in all)", t.budget.String(), t.failed)
	}
	return fmt.Sprintf("%s: %d failed of %d, budget %s", t.scope, t.failed, t.members,
		planning.Describe(t.budget, t.members, planning.Budget(t.budget, t.members)))
}

// scopeMembers is the size of a scope as the controller counts it when it weighs
// a budget: its targets less those skipped as already up to date (the
// controller's scopes hold only the members it operates on; skipped ones
// are added to the counts apart).
func scopeMembers(c v1alpha1.CampaignCounts) int {
	return int(c.Targets - c.Skipped)
}

// exceededBudgets lists the failure budgets of c's spec that its status's
// failures exceed, decided as the controller decides (planning.Exceeded): the
// global one over the whole Campaign, the per-datacenter one in each
// datacenter of status.datacenters. The status counts no failures per wave:
// when the Paused condition says a budget tripped (pausedByBudget) and
// neither of those is exceeded, or its message names a wave's, it is the
// per-wave one, and the Campaign's failures stand for the wave's (an upper
// bound).
func exceededBudgets(c *v1alpha1.Campaign) []budgetTrip {
	budgets := c.Spec.FailurePolicy.MaxFailures
	counts := c.Status.Counts
	var trips []budgetTrip
	if n := scopeMembers(counts); planning.Exceeded(int(counts.Failed), budgets.Global, n) {
		trips = append(trips, budgetTrip{key: budgetGlobal, scope: "global", failed: int(counts.Failed), members: n, budget: budgets.Global})
	}
	for _, dc := range c.Status.Datacenters {
		if n := scopeMembers(dc.Counts); planning.Exceeded(int(dc.Counts.Failed), budgets.PerDatacenter, n) {
			trips = append(trips, budgetTrip{key: budgetPerDatacenter, scope: "datacenter " + dc.Name,
				failed: int(dc.Counts.Failed), members: n, budget: budgets.PerDatacenter})
		}
	}
	if budgets.PerWave != nil && pausedByBudget(c) && (len(trips) == 0 || waveTripped.MatchString(pausedCondition(c).Message)) {
		trips = append(trips, budgetTrip{key: budgetPerWave, scope: "a wave", failed: int(counts.Failed), budget: budgets.PerWave})
	}
	return trips
}

// waveTripped finds a per-wave budget among the budgets the controller's
// Paused message lists as exceeded ("wave 3: 4 failed, budget ..."): a
// datacenter's trip can hide it from the counts alone.
var waveTripped = regexp.MustCompile(`\bwave \d+: \d+ failed\b`)

// pausedByBudget says whether the Campaign's Paused condition gives a
// tripped failure budget as its reason.
func pausedByBudget(c *v1alpha1.Campaign) bool {
	return pausedFor(c, v1alpha1.CampaignReasonFailureBudgetExceeded)
}

// heldByBudget says whether the controller reports a tripped failure
// budget: in the Paused condition, or as a datacenter's pausedReason.
func heldByBudget(c *v1alpha1.Campaign) bool {
	return heldFor(c, v1alpha1.CampaignReasonFailureBudgetExceeded)
}

// raisedBudgets is, for each key that tripped, a value that none of its
// tripped scopes' failures exceed and that lowers no scope's budget:
//   - global and perDatacenter: a number stays a number, the most failures
//     in a tripped scope (more than the budget, since it tripped); a
//     percentage stays a percentage, the least whole one that allows each
//     tripped scope its failures (above the current one, which did not);
//   - perWave (a wave's size and failures are not in the status) becomes a
//     number: the Campaign's failures, an upper bound of the wave's, or
//     what the budget allows the whole Campaign if more (no wave's budget
//     exceeds that, so none goes down).
func raisedBudgets(c *v1alpha1.Campaign, trips []budgetTrip) map[string]intstr.IntOrString {
	byKey := map[string][]budgetTrip{}
	for _, t := range trips {
		byKey[t.key] = append(byKey[t.key], t)
	}
	out := map[string]intstr.IntOrString{}
	for key, ts := range byKey {
		v := ts[0].budget
		most := 0
		for _, t := range ts {
			most = max(most, t.failed)
		}
		switch {
		case key == budgetPerWave:
			out[key] = intstr.FromInt32(int32(max(most, planning.Budget(v, scopeMembers(c.Status.Counts)))))
		case v.Type == intstr.Int:
			out[key] = intstr.FromInt32(int32(most))
		default:
			out[key] = intstr.FromString(strconv.Itoa(leastPercent(v, ts)) + "%")
		}
	}
	return out
}

// leastPercent is the least whole percentage, from v's, whose budget in each
// of trips' scopes allows its failures; at most 100.
func leastPercent(v *intstr.IntOrString, trips []budgetTrip) int {
	p, err := strconv.Atoi(strings.TrimSuffix(v.StrVal, "%"))
	if err != nil || p < 0 {
		p = 0 // validation refuses it; start from nothing
	}
	allows := func(p int) bool {
		pv := intstr.FromString(strconv.Itoa(p) + "%")
		for _, t := range trips {
			if planning.Exceeded(t.failed, &pv, t.members) {
				return false
			}
		}
		return true
	}
	for p < 100 && !allows(p) {
		p++
	}
	return p
}

// budgetPatch is the kubectl patch command that sets budgets.
func budgetPatch(name string, budgets map[string]intstr.IntOrString) (string, error) {
	patch, err := json.Marshal(map[string]any{"spec": map[string]any{"failurePolicy": map[string]any{"maxFailures": budgets}}})
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("kubectl patch campaign %s --type=merge -p '%s'", name, patch), nil
}

// tripsText joins the trips' texts: "global: ...; datacenter dc-east: ...".
func tripsText(trips []budgetTrip) string {
	parts := make([]string, len(trips))
	for i, t := range trips {
		parts[i] = t.text()
	}
	return strings.Join(parts, "; ")
}
