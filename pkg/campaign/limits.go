// Package campaign holds the arithmetic of Campaigns, shared by the API
// server (a dry run shows the plan) and the controller: who the members are
// and in which wave, how int-or-percent limits and budgets round, when a
// datacenter's maintenance window is open, and whether one more member may
// become unavailable. It does no I/O.
package campaign

import (
	"fmt"
	"math"

	"k8s.io/apimachinery/pkg/util/intstr"

	"stargate.io/stargate/pkg/apis/stargate/v1alpha1"
)

// Unlimited is the limit of a scope that has none.
const Unlimited = math.MaxInt

// The rounding, written down once:
//   - sizes and maxUnavailable: a percentage of the scope's members rounds
//     down, with a minimum of 1 (a scope with members always makes progress);
//   - failure budgets: a percentage rounds down with no minimum (0% of any
//     scope is 0), and a budget trips when failures EXCEED it.

// Size is how many members a wave of size v takes out of total. It is at
// least 1 when total > 0.
func Size(v intstr.IntOrString, total int) int {
	n := scaled(v, total)
	if n < 1 && total > 0 {
		n = 1
	}
	return n
}

// MaxUnavailable is the limit v sets on a scope of members members:
// Unlimited when v is nil, else at least 1.
func MaxUnavailable(v *intstr.IntOrString, members int) int {
	if v == nil {
		return Unlimited
	}
	n := scaled(*v, members)
	if n < 1 {
		n = 1
	}
	return n
}

// Budget is the number of failures v allows in a scope of members members:
// Unlimited when v is nil.
func Budget(v *intstr.IntOrString, members int) int {
	if v == nil {
		return Unlimited
	}
	return max(scaled(*v, members), 0)
}

// Exceeded reports whether failures trip budget v of a scope of members members.
func Exceeded(failures int, v *intstr.IntOrString, members int) bool {
	return failures > Budget(v, members)
}

// scaled is v as a number of members out of total, percentages rounded
// down. Validation has refused values intstr cannot parse; one that slips
// through counts as 0.
func scaled(v intstr.IntOrString, total int) int {
	n, err := intstr.GetScaledValueFromIntOrPercent(&v, total, false)
	if err != nil {
		return 0
	}
	return n
}

// Describe prints v with the number it stands for in a scope, for messages:
// "10% (12 of 120)".
func Describe(v *intstr.IntOrString, members int, value int) string {
	if v == nil {
		return "unlimited"
	}
	if v.Type == intstr.String {
		return fmt.Sprintf("%s (%d of %d)", v.StrVal, value, members)
	}
	return fmt.Sprint(value)
}

// Scopes are the sizes of a Campaign's scopes: its members in all, per
// datacenter, per failure domain (DomainKey) and per wave.
type Scopes struct {
	Total  int
	DC     map[string]int
	Domain map[string]int
	Wave   map[int32]int
}

// ScopesOf counts members per scope.
func ScopesOf(members []Member) Scopes {
	s := Scopes{Total: len(members), DC: map[string]int{}, Domain: map[string]int{}, Wave: map[int32]int{}}
	for _, m := range members {
		s.DC[m.Datacenter]++
		s.Domain[m.DomainKey()]++
		s.Wave[m.Wave]++
	}
	return s
}

// Unavailable counts the members unavailable now, per scope.
type Unavailable struct {
	Total  int
	DC     map[string]int
	Domain map[string]int
	// Domains is how many failure domains have a member unavailable.
	Domains int
}

// NewUnavailable returns empty counts.
func NewUnavailable() *Unavailable {
	return &Unavailable{DC: map[string]int{}, Domain: map[string]int{}}
}

// Add counts m as unavailable.
func (u *Unavailable) Add(m Member) {
	u.Total++
	u.DC[m.Datacenter]++
	if u.Domain[m.DomainKey()]++; u.Domain[m.DomainKey()] == 1 {
		u.Domains++
	}
}

// Allows reports whether member m, available now, may become unavailable
// without any of spec's limits being exceeded: maxUnavailable globally, in
// m's datacenter and in m's failure domain, and maxFailureDomainsInFlight.
// It returns the limit that holds m back, for the operator, when not.
func Allows(spec *v1alpha1.CampaignSpec, scopes Scopes, u *Unavailable, m Member) (bool, string) {
	limits := spec.MaxUnavailable
	if u.Total+1 > MaxUnavailable(limits.Global, scopes.Total) {
		return false, "maxUnavailable.global"
	}
	if u.DC[m.Datacenter]+1 > MaxUnavailable(limits.PerDatacenter, scopes.DC[m.Datacenter]) {
		return false, "maxUnavailable.perDatacenter"
	}
	key := m.DomainKey()
	if spec.FailureDomainLabel != "" && u.Domain[key]+1 > MaxUnavailable(limits.PerFailureDomain, scopes.Domain[key]) {
		return false, "maxUnavailable.perFailureDomain"
	}
	if spec.MaxFailureDomainsInFlight != nil && u.Domain[key] == 0 && u.Domains >= int(*spec.MaxFailureDomainsInFlight) {
		return false, "maxFailureDomainsInFlight"
	}
	return true, ""
}
