package campaign

import (
	"testing"

	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"stargate.io/stargate/pkg/apis/stargate/v1alpha1"
)

// num and pct are int-or-percent values as a spec holds them.
func num(n int) *intstr.IntOrString    { return ptr.To(intstr.FromInt32(int32(n))) }
func pct(s string) *intstr.IntOrString { return ptr.To(intstr.FromString(s)) }

func TestSize(t *testing.T) {
	tests := []struct {
		name  string
		size  *intstr.IntOrString
		total int
		want  int
	}{
		{name: "10% of 5 rounds down to 0, raised to 1", size: pct("10%"), total: 5, want: 1},
		{name: "10% of 19 rounds down to 1", size: pct("10%"), total: 19, want: 1},
		{name: "10% of 20 is 2", size: pct("10%"), total: 20, want: 2},
		{name: "10% of 29 rounds down to 2", size: pct("10%"), total: 29, want: 2},
		{name: "100% of 7 is 7", size: pct("100%"), total: 7, want: 7},
		{name: "0% of 7 is raised to 1", size: pct("0%"), total: 7, want: 1},
		{name: "1% of 100000 is 1000", size: pct("1%"), total: 100000, want: 1000},
		{name: "an int is taken as it is", size: num(3), total: 100, want: 3},
		{name: "an int larger than the members is taken as it is", size: num(50), total: 7, want: 50},
		{name: "an int 0 is raised to 1", size: num(0), total: 7, want: 1},
		{name: "no members: a percentage is 0", size: pct("50%"), total: 0, want: 0},
		{name: "no members: an int 0 stays 0", size: num(0), total: 0, want: 0},
		{name: "a string that is no percentage counts as 0, raised to 1", size: pct("ten"), total: 7, want: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Size(*tc.size, tc.total); got != tc.want {
				t.Errorf("Size(%s, %d) = %d, want %d", tc.size.String(), tc.total, got, tc.want)
			}
		})
	}
}

func TestMaxUnavailable(t *testing.T) {
	tests := []struct {
		name    string
		v       *intstr.IntOrString
		members int
		want    int
	}{
		{name: "nil is unlimited", v: nil, members: 100, want: Unlimited},
		{name: "10% of 5 is raised to 1", v: pct("10%"), members: 5, want: 1},
		{name: "10% of 19 is 1", v: pct("10%"), members: 19, want: 1},
		{name: "10% of 20 is 2", v: pct("10%"), members: 20, want: 2},
		{name: "100% of 7 is 7", v: pct("100%"), members: 7, want: 7},
		{name: "0% is raised to 1 (validation refuses it anyway)", v: pct("0%"), members: 100, want: 1},
		{name: "an int 0 is raised to 1", v: num(0), members: 100, want: 1},
		{name: "an int is taken as it is", v: num(4), members: 3, want: 4},
		{name: "a scope without members still allows 1", v: pct("10%"), members: 0, want: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := MaxUnavailable(tc.v, tc.members); got != tc.want {
				t.Errorf("MaxUnavailable(%v, %d) = %d, want %d", tc.v, tc.members, got, tc.want)
			}
		})
	}
}

func TestBudgetAndExceeded(t *testing.T) {
	tests := []struct {
		name    string
		v       *intstr.IntOrString
		members int
		want    int
		// failures that do not trip the budget, and the fewest that do (-1: none does)
		bearable, trips int
	}{
		{name: "nil is unlimited", v: nil, members: 100, want: Unlimited, bearable: 100, trips: -1},
		{name: "0% of 100 is 0: the first failure trips", v: pct("0%"), members: 100, want: 0, bearable: 0, trips: 1},
		{name: "an int 0: the first failure trips", v: num(0), members: 100, want: 0, bearable: 0, trips: 1},
		{name: "5% of 19 rounds down to 0, no minimum", v: pct("5%"), members: 19, want: 0, bearable: 0, trips: 1},
		{name: "5% of 20 is 1: one failure is borne, two trip", v: pct("5%"), members: 20, want: 1, bearable: 1, trips: 2},
		{name: "5% of 39 rounds down to 1", v: pct("5%"), members: 39, want: 1, bearable: 1, trips: 2},
		{name: "an int 1: one failure is borne, two trip", v: num(1), members: 1000, want: 1, bearable: 1, trips: 2},
		{name: "an int is taken as it is, above the members", v: num(10), members: 3, want: 10, bearable: 10, trips: 11},
		{name: "a negative int counts as 0", v: num(-2), members: 10, want: 0, bearable: 0, trips: 1},
		{name: "100% of 10: every member may fail", v: pct("100%"), members: 10, want: 10, bearable: 10, trips: 11},
		{name: "a scope without members: a percentage is 0", v: pct("50%"), members: 0, want: 0, bearable: 0, trips: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Budget(tc.v, tc.members); got != tc.want {
				t.Errorf("Budget(%v, %d) = %d, want %d", tc.v, tc.members, got, tc.want)
			}
			for f := 0; f <= tc.bearable; f++ {
				if Exceeded(f, tc.v, tc.members) {
					t.Errorf("Exceeded(%d, %v, %d) = true, want false", f, tc.v, tc.members)
				}
			}
			if tc.trips >= 0 && !Exceeded(tc.trips, tc.v, tc.members) {
				t.Errorf("Exceeded(%d, %v, %d) = false, want true", tc.trips, tc.v, tc.members)
			}
		})
	}
}

// TestBudgetsPerScope reads one failurePolicy the way the controller does:
// each budget against its own scope, described for the operator.
func TestBudgetsPerScope(t *testing.T) {
	policy := v1alpha1.CampaignFailureBudgets{Global: pct("5%"), PerDatacenter: num(2), PerWave: pct("10%")}
	// 120 members: 100 in dc-a, 20 in dc-b; wave 1 has 9, wave 2 the other 111.
	scopes := Scopes{
		Total: 120,
		DC:    map[string]int{"dc-a": 100, "dc-b": 20},
		Wave:  map[int32]int{1: 9, 2: 111},
	}
	tests := []struct {
		name       string
		v          *intstr.IntOrString
		members    int
		failures   int
		wantBudget int
		wantDesc   string
		wantTrips  bool
	}{
		{name: "global: 5% of 120 is 6, 6 failures do not trip", v: policy.Global, members: scopes.Total, failures: 6, wantBudget: 6, wantDesc: "5% (6 of 120)"},
		{name: "global: 7 failures trip", v: policy.Global, members: scopes.Total, failures: 7, wantBudget: 6, wantDesc: "5% (6 of 120)", wantTrips: true},
		{name: "perDatacenter dc-a: an int is the same in every datacenter", v: policy.PerDatacenter, members: scopes.DC["dc-a"], failures: 2, wantBudget: 2, wantDesc: "2"},
		{name: "perDatacenter dc-b: 3 failures trip", v: policy.PerDatacenter, members: scopes.DC["dc-b"], failures: 3, wantBudget: 2, wantDesc: "2", wantTrips: true},
		{name: "perWave 1: 10% of 9 is 0, the first failure trips", v: policy.PerWave, members: scopes.Wave[1], failures: 1, wantBudget: 0, wantDesc: "10% (0 of 9)", wantTrips: true},
		{name: "perWave 2: 10% of 111 is 11", v: policy.PerWave, members: scopes.Wave[2], failures: 11, wantBudget: 11, wantDesc: "10% (11 of 111)"},
		{name: "no budget is unlimited", v: nil, members: scopes.Total, failures: 120, wantBudget: Unlimited, wantDesc: "unlimited"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			budget := Budget(tc.v, tc.members)
			if budget != tc.wantBudget {
				t.Errorf("Budget = %d, want %d", budget, tc.wantBudget)
			}
			if got := Describe(tc.v, tc.members, budget); got != tc.wantDesc {
				t.Errorf("Describe = %q, want %q", got, tc.wantDesc)
			}
			if got := Exceeded(tc.failures, tc.v, tc.members); got != tc.wantTrips {
				t.Errorf("Exceeded(%d) = %v, want %v", tc.failures, got, tc.wantTrips)
			}
		})
	}
}

func TestDescribe(t *testing.T) {
	tests := []struct {
		name    string
		v       *intstr.IntOrString
		members int
		want    string
	}{
		{name: "a percentage shows what it stands for", v: pct("10%"), members: 120, want: "10% (12 of 120)"},
		{name: "maxUnavailable raised to its minimum shows 1", v: pct("10%"), members: 5, want: "10% (1 of 5)"},
		{name: "an int shows itself", v: num(3), members: 120, want: "3"},
		{name: "nil is unlimited", v: nil, members: 120, want: "unlimited"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Describe(tc.v, tc.members, MaxUnavailable(tc.v, tc.members)); got != tc.want {
				t.Errorf("Describe = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestScopesOf(t *testing.T) {
	members := []Member{
		{Datacenter: "a", Name: "1", Domain: "r1", Wave: 1},
		{Datacenter: "a", Name: "2", Domain: "r1", Wave: 2},
		{Datacenter: "a", Name: "3", Domain: "r2", Wave: 2},
		{Datacenter: "b", Name: "1", Domain: "r1", Wave: 2},
		{Datacenter: "b", Name: "2", Wave: 3},
	}
	s := ScopesOf(members)
	if s.Total != 5 {
		t.Errorf("Total = %d, want 5", s.Total)
	}
	wantDC := map[string]int{"a": 3, "b": 2}
	wantDomain := map[string]int{"a/r1": 2, "a/r2": 1, "b/r1": 1, "b/": 1}
	wantWave := map[int32]int{1: 1, 2: 3, 3: 1}
	for k, v := range wantDC {
		if s.DC[k] != v {
			t.Errorf("DC[%q] = %d, want %d", k, s.DC[k], v)
		}
	}
	for k, v := range wantDomain {
		if s.Domain[k] != v {
			t.Errorf("Domain[%q] = %d, want %d (racks of the same name in two datacenters are two domains)", k, s.Domain[k], v)
		}
	}
	for k, v := range wantWave {
		if s.Wave[k] != v {
			t.Errorf("Wave[%d] = %d, want %d", k, s.Wave[k], v)
		}
	}
	if len(s.DC) != len(wantDC) || len(s.Domain) != len(wantDomain) || len(s.Wave) != len(wantWave) {
		t.Errorf("ScopesOf = %+v, want exactly DC %v, Domain %v, Wave %v", s, wantDC, wantDomain, wantWave)
	}
}

func TestUnavailableAdd(t *testing.T) {
	u := NewUnavailable()
	steps := []struct {
		m           Member
		wantTotal   int
		wantDomains int
	}{
		{m: Member{Datacenter: "a", Name: "1", Domain: "r1"}, wantTotal: 1, wantDomains: 1},
		{m: Member{Datacenter: "a", Name: "2", Domain: "r1"}, wantTotal: 2, wantDomains: 1},
		{m: Member{Datacenter: "a", Name: "3", Domain: "r2"}, wantTotal: 3, wantDomains: 2},
		{m: Member{Datacenter: "b", Name: "1", Domain: "r1"}, wantTotal: 4, wantDomains: 3},
		{m: Member{Datacenter: "b", Name: "2"}, wantTotal: 5, wantDomains: 4},
	}
	for i, s := range steps {
		u.Add(s.m)
		if u.Total != s.wantTotal || u.Domains != s.wantDomains {
			t.Errorf("after Add #%d (%+v): Total %d, Domains %d; want %d, %d", i+1, s.m, u.Total, u.Domains, s.wantTotal, s.wantDomains)
		}
	}
	if u.DC["a"] != 3 || u.DC["b"] != 2 {
		t.Errorf("DC = %v, want a:3 b:2", u.DC)
	}
	if u.Domain["a/r1"] != 2 || u.Domain["a/r2"] != 1 || u.Domain["b/r1"] != 1 || u.Domain["b/"] != 1 {
		t.Errorf("Domain = %v, want a/r1:2 a/r2:1 b/r1:1 b/:1", u.Domain)
	}
}

func TestAllows(t *testing.T) {
	// 20 members: dc-a has 10 (racks r1 ×6, r2 ×4), dc-b has 10 (r1 ×5, r3 ×5).
	var members []Member
	add := func(dc, rack string, n int) {
		for i := range n {
			members = append(members, Member{Datacenter: dc, Domain: rack, Name: rack + "-" + string(rune('a'+i)), Wave: 1})
		}
	}
	add("dc-a", "r1", 6)
	add("dc-a", "r2", 4)
	add("dc-b", "r1", 5)
	add("dc-b", "r3", 5)
	scopes := ScopesOf(members)
	m := func(dc, rack string) Member { return Member{Datacenter: dc, Domain: rack, Name: "x", Wave: 1} }

	tests := []struct {
		name        string
		spec        v1alpha1.CampaignSpec
		unavailable []Member
		m           Member
		want        bool
		wantLimit   string
	}{
		{
			name: "no limits: anything goes",
			spec: v1alpha1.CampaignSpec{},
			unavailable: []Member{m("dc-a", "r1"), m("dc-a", "r1"), m("dc-a", "r1"),
				m("dc-a", "r1"), m("dc-a", "r1")},
			m:    m("dc-a", "r1"),
			want: true,
		},
		{
			name:        "global 10% of 20 is 2: the second may go",
			spec:        v1alpha1.CampaignSpec{MaxUnavailable: v1alpha1.CampaignMaxUnavailable{Global: pct("10%")}},
			unavailable: []Member{m("dc-a", "r1")},
			m:           m("dc-b", "r3"),
			want:        true,
		},
		{
			name:        "global 10% of 20 is 2: a third is held back",
			spec:        v1alpha1.CampaignSpec{MaxUnavailable: v1alpha1.CampaignMaxUnavailable{Global: pct("10%")}},
			unavailable: []Member{m("dc-a", "r1"), m("dc-b", "r1")},
			m:           m("dc-b", "r3"),
			wantLimit:   "maxUnavailable.global",
		},
		{
			name:      "global 1%: rounded up to 1, the first may go",
			spec:      v1alpha1.CampaignSpec{MaxUnavailable: v1alpha1.CampaignMaxUnavailable{Global: pct("1%")}},
			m:         m("dc-a", "r1"),
			want:      true,
			wantLimit: "",
		},
		{
			name:        "perDatacenter 1: the other datacenter may go",
			spec:        v1alpha1.CampaignSpec{MaxUnavailable: v1alpha1.CampaignMaxUnavailable{PerDatacenter: num(1)}},
			unavailable: []Member{m("dc-a", "r1")},
			m:           m("dc-b", "r1"),
			want:        true,
		},
		{
			name:        "perDatacenter 1: the same datacenter is held back",
			spec:        v1alpha1.CampaignSpec{MaxUnavailable: v1alpha1.CampaignMaxUnavailable{PerDatacenter: num(1)}},
			unavailable: []Member{m("dc-a", "r1")},
			m:           m("dc-a", "r2"),
			wantLimit:   "maxUnavailable.perDatacenter",
		},
		{
			name:        "perDatacenter 20% of dc-a's 10 is 2",
			spec:        v1alpha1.CampaignSpec{MaxUnavailable: v1alpha1.CampaignMaxUnavailable{PerDatacenter: pct("20%")}},
			unavailable: []Member{m("dc-a", "r1")},
			m:           m("dc-a", "r2"),
			want:        true,
		},
		{
			name: "global is checked before perDatacenter",
			spec: v1alpha1.CampaignSpec{MaxUnavailable: v1alpha1.CampaignMaxUnavailable{
				Global: num(1), PerDatacenter: num(1)}},
			unavailable: []Member{m("dc-a", "r1")},
			m:           m("dc-a", "r2"),
			wantLimit:   "maxUnavailable.global",
		},
		{
			name: "perFailureDomain 25% of dc-a/r1's 6 is 1: the same rack is held back",
			spec: v1alpha1.CampaignSpec{FailureDomainLabel: "rack",
				MaxUnavailable: v1alpha1.CampaignMaxUnavailable{PerFailureDomain: pct("25%")}},
			unavailable: []Member{m("dc-a", "r1")},
			m:           m("dc-a", "r1"),
			wantLimit:   "maxUnavailable.perFailureDomain",
		},
		{
			name: "perFailureDomain: a rack of the same name in another datacenter is another domain",
			spec: v1alpha1.CampaignSpec{FailureDomainLabel: "rack",
				MaxUnavailable: v1alpha1.CampaignMaxUnavailable{PerFailureDomain: num(1)}},
			unavailable: []Member{m("dc-a", "r1")},
			m:           m("dc-b", "r1"),
			want:        true,
		},
		{
			name: "perFailureDomain 50% of dc-a/r2's 4 is 2",
			spec: v1alpha1.CampaignSpec{FailureDomainLabel: "rack",
				MaxUnavailable: v1alpha1.CampaignMaxUnavailable{PerFailureDomain: pct("50%")}},
			unavailable: []Member{m("dc-a", "r2")},
			m:           m("dc-a", "r2"),
			want:        true,
		},
		{
			name: "perFailureDomain without failureDomainLabel limits nothing",
			spec: v1alpha1.CampaignSpec{
				MaxUnavailable: v1alpha1.CampaignMaxUnavailable{PerFailureDomain: num(1)}},
			unavailable: []Member{m("dc-a", ""), m("dc-a", "")},
			m:           m("dc-a", ""),
			want:        true,
		},
		{
			name:        "maxFailureDomainsInFlight 2: a member of a domain in flight does not count a new domain",
			spec:        v1alpha1.CampaignSpec{FailureDomainLabel: "rack", MaxFailureDomainsInFlight: ptr.To[int32](2)},
			unavailable: []Member{m("dc-a", "r1"), m("dc-b", "r3")},
			m:           m("dc-a", "r1"),
			want:        true,
		},
		{
			name:        "maxFailureDomainsInFlight 2: a third domain is held back",
			spec:        v1alpha1.CampaignSpec{FailureDomainLabel: "rack", MaxFailureDomainsInFlight: ptr.To[int32](2)},
			unavailable: []Member{m("dc-a", "r1"), m("dc-b", "r3")},
			m:           m("dc-a", "r2"),
			wantLimit:   "maxFailureDomainsInFlight",
		},
		{
			name:        "maxFailureDomainsInFlight 2: dc-b/r1 is a new domain though dc-a/r1 is in flight",
			spec:        v1alpha1.CampaignSpec{FailureDomainLabel: "rack", MaxFailureDomainsInFlight: ptr.To[int32](2)},
			unavailable: []Member{m("dc-a", "r1"), m("dc-a", "r2")},
			m:           m("dc-b", "r1"),
			wantLimit:   "maxFailureDomainsInFlight",
		},
		{
			name:      "maxFailureDomainsInFlight 1: nothing in flight, the first domain may go",
			spec:      v1alpha1.CampaignSpec{FailureDomainLabel: "rack", MaxFailureDomainsInFlight: ptr.To[int32](1)},
			m:         m("dc-a", "r2"),
			want:      true,
			wantLimit: "",
		},
		{
			name: "perFailureDomain is checked before maxFailureDomainsInFlight",
			spec: v1alpha1.CampaignSpec{FailureDomainLabel: "rack", MaxFailureDomainsInFlight: ptr.To[int32](1),
				MaxUnavailable: v1alpha1.CampaignMaxUnavailable{PerFailureDomain: num(1)}},
			unavailable: []Member{m("dc-a", "r1")},
			m:           m("dc-a", "r1"),
			wantLimit:   "maxUnavailable.perFailureDomain",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u := NewUnavailable()
			for _, um := range tc.unavailable {
				u.Add(um)
			}
			got, limit := Allows(&tc.spec, scopes, u, tc.m)
			if got != tc.want || limit != tc.wantLimit {
				t.Errorf("Allows = %v, %q; want %v, %q", got, limit, tc.want, tc.wantLimit)
			}
		})
	}
}

// TestAllowsNeverExceeds admits members one by one as Allows lets them and
// checks that no scope ever holds more than its limit.
func TestAllowsNeverExceeds(t *testing.T) {
	var members []Member
	for i := range 60 {
		members = append(members, Member{
			Datacenter: []string{"a", "b", "c"}[i%3],
			Domain:     []string{"r1", "r2", "r3", "r4"}[i%4],
			Name:       string(rune('A' + i)),
			Wave:       1,
		})
	}
	spec := v1alpha1.CampaignSpec{
		FailureDomainLabel:        "rack",
		MaxFailureDomainsInFlight: ptr.To[int32](4),
		MaxUnavailable: v1alpha1.CampaignMaxUnavailable{
			Global: pct("15%"), PerDatacenter: num(4), PerFailureDomain: pct("40%"),
		},
	}
	scopes := ScopesOf(members)
	u := NewUnavailable()
	for _, m := range members {
		if ok, _ := Allows(&spec, scopes, u, m); ok {
			u.Add(m)
		}
	}
	if u.Total == 0 {
		t.Fatal("admitted nobody")
	}
	if limit := MaxUnavailable(spec.MaxUnavailable.Global, scopes.Total); u.Total > limit {
		t.Errorf("admitted %d, over the global limit %d", u.Total, limit)
	}
	for dc, n := range u.DC {
		if n > 4 {
			t.Errorf("datacenter %s has %d unavailable, over perDatacenter 4", dc, n)
		}
	}
	for d, n := range u.Domain {
		if limit := MaxUnavailable(spec.MaxUnavailable.PerFailureDomain, scopes.Domain[d]); n > limit {
			t.Errorf("domain %s has %d unavailable, over its limit %d", d, n, limit)
		}
	}
	if u.Domains > 4 {
		t.Errorf("%d domains in flight, over maxFailureDomainsInFlight 4", u.Domains)
	}
}
