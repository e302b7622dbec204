package campaign

import (
	"fmt"
	"math/rand"
	"reflect"
	"slices"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"stargate.io/stargate/pkg/apis/stargate/v1alpha1"
)

// cand is a Candidate with labels given as key, value, key, value...
func cand(dc, name string, kv ...string) Candidate {
	c := Candidate{Datacenter: dc, Name: name, Labels: map[string]string{}}
	for i := 0; i+1 < len(kv); i += 2 {
		c.Labels[kv[i]] = kv[i+1]
	}
	return c
}

// cands is n candidates dc/prefix-00 ... with the same labels.
func cands(dc, prefix string, n int, kv ...string) []Candidate {
	var out []Candidate
	for i := range n {
		out = append(out, cand(dc, fmt.Sprintf("%s-%02d", prefix, i), kv...))
	}
	return out
}

func concat(lists ...[]Candidate) []Candidate {
	var out []Candidate
	for _, l := range lists {
		out = append(out, l...)
	}
	return out
}

func wave(size intstr.IntOrString, selector map[string]string) v1alpha1.CampaignWave {
	w := v1alpha1.CampaignWave{Size: size}
	if selector != nil {
		w.Selector = &metav1.LabelSelector{MatchLabels: selector}
	}
	return w
}

// waveSizes is how many members each wave of p has, wave 1 first.
func waveSizes(p *Plan) []int {
	sizes := make([]int, p.Waves())
	for _, m := range p.Members {
		sizes[m.Wave-1]++
	}
	return sizes
}

// names lists p's members as dc/name, in start order, with their wave.
func names(p *Plan) []string {
	var out []string
	for _, m := range p.Members {
		out = append(out, fmt.Sprintf("%s/%s:%d", m.Datacenter, m.Name, m.Wave))
	}
	return out
}

func TestNewPlanSkipUpToDate(t *testing.T) {
	candidates := []Candidate{
		{Datacenter: "a", Name: "a1", CurrentOS: "os-2"},
		{Datacenter: "a", Name: "a2", CurrentOS: "os-1"},
		{Datacenter: "a", Name: "a3"},
		{Datacenter: "b", Name: "b1", CurrentOS: "os-2"},
		{Datacenter: "c", Name: "c1", CurrentOS: ""},
	}
	tests := []struct {
		name        string
		spec        v1alpha1.CampaignSpec
		osVersion   map[string]string
		wantSkipped map[string]int32
		wantMembers int
	}{
		{
			name:        "repave skips the members already at their datacenter's osVersion",
			spec:        v1alpha1.CampaignSpec{Operation: v1alpha1.OperationRepave, SkipUpToDate: ptr.To(true)},
			osVersion:   map[string]string{"a": "os-2", "b": "os-2"},
			wantSkipped: map[string]int32{"a": 1, "b": 1},
			wantMembers: 3,
		},
		{
			name:        "osVersion is per datacenter",
			spec:        v1alpha1.CampaignSpec{Operation: v1alpha1.OperationRepave, SkipUpToDate: ptr.To(true)},
			osVersion:   map[string]string{"a": "os-1", "b": "os-3"},
			wantSkipped: map[string]int32{"a": 1},
			wantMembers: 4,
		},
		{
			name:        "a datacenter without an osVersion entry skips nothing",
			spec:        v1alpha1.CampaignSpec{Operation: v1alpha1.OperationRepave, SkipUpToDate: ptr.To(true)},
			osVersion:   map[string]string{"a": "os-2"},
			wantSkipped: map[string]int32{"a": 1},
			wantMembers: 4,
		},
		{
			name:        "an empty osVersion skips nothing, not even a Hardware without currentOS",
			spec:        v1alpha1.CampaignSpec{Operation: v1alpha1.OperationRepave, SkipUpToDate: ptr.To(true)},
			osVersion:   map[string]string{"a": "", "c": ""},
			wantSkipped: map[string]int32{},
			wantMembers: 5,
		},
		{
			name:        "skipUpToDate false skips nothing",
			spec:        v1alpha1.CampaignSpec{Operation: v1alpha1.OperationRepave, SkipUpToDate: ptr.To(false)},
			osVersion:   map[string]string{"a": "os-2", "b": "os-2"},
			wantSkipped: map[string]int32{},
			wantMembers: 5,
		},
		{
			name:        "skipUpToDate unset on a repave is its default, true",
			spec:        v1alpha1.CampaignSpec{Operation: v1alpha1.OperationRepave},
			osVersion:   map[string]string{"a": "os-2", "b": "os-2"},
			wantSkipped: map[string]int32{"a": 1, "b": 1},
			wantMembers: 3,
		},
		{
			name:        "a reboot skips nothing, whatever skipUpToDate says",
			spec:        v1alpha1.CampaignSpec{Operation: v1alpha1.OperationReboot, SkipUpToDate: ptr.To(true)},
			osVersion:   map[string]string{"a": "os-2", "b": "os-2"},
			wantSkipped: map[string]int32{},
			wantMembers: 5,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := NewPlan(&tc.spec, candidates, tc.osVersion)
			if !reflect.DeepEqual(p.Skipped, tc.wantSkipped) {
				t.Errorf("Skipped = %v, want %v", p.Skipped, tc.wantSkipped)
			}
			if len(p.Members) != tc.wantMembers {
				t.Errorf("members %v, want %d of them", names(p), tc.wantMembers)
			}
		})
	}
}

func TestNewPlanWaves(t *testing.T) {
	twenty := concat(cands("a", "a", 10), cands("b", "b", 10))
	tests := []struct {
		name       string
		spec       v1alpha1.CampaignSpec
		candidates []Candidate
		osVersion  map[string]string
		wantSizes  []int
		// wantIn lists, per wave (from 1), names that must be in it.
		wantIn map[int32][]string
	}{
		{
			name:       "no waves: one wave of all",
			candidates: twenty,
			wantSizes:  []int{20},
		},
		{
			name:       "no candidates: no wave",
			spec:       v1alpha1.CampaignSpec{Waves: []v1alpha1.CampaignWave{wave(intstr.FromInt32(1), nil)}},
			candidates: nil,
			wantSizes:  []int{},
		},
		{
			name: "sizes of all members, the last entry repeating",
			spec: v1alpha1.CampaignSpec{Waves: []v1alpha1.CampaignWave{
				wave(intstr.FromInt32(1), nil), wave(intstr.FromString("10%"), nil), wave(intstr.FromString("50%"), nil)}},
			candidates: twenty,
			wantSizes:  []int{1, 2, 10, 7},
		},
		{
			name:       "a percentage rounds down with a minimum of 1: 10% of 5",
			spec:       v1alpha1.CampaignSpec{Waves: []v1alpha1.CampaignWave{wave(intstr.FromString("10%"), nil)}},
			candidates: cands("a", "a", 5),
			wantSizes:  []int{1, 1, 1, 1, 1},
		},
		{
			name:       "an int larger than what is left takes what is left",
			spec:       v1alpha1.CampaignSpec{Waves: []v1alpha1.CampaignWave{wave(intstr.FromInt32(3), nil), wave(intstr.FromInt32(100), nil)}},
			candidates: twenty,
			wantSizes:  []int{3, 17},
		},
		{
			name: "sizes count the members left after skipping: 40% of 5",
			spec: v1alpha1.CampaignSpec{Operation: v1alpha1.OperationRepave, SkipUpToDate: ptr.To(true),
				Waves: []v1alpha1.CampaignWave{wave(intstr.FromString("40%"), nil)}},
			candidates: func() []Candidate {
				cs := cands("a", "a", 10)
				for i := range 5 {
					cs[i].CurrentOS = "os-2"
				}
				return cs
			}(),
			osVersion: map[string]string{"a": "os-2"},
			wantSizes: []int{2, 2, 1},
		},
		{
			name: "a canary wave takes only matching members",
			spec: v1alpha1.CampaignSpec{Waves: []v1alpha1.CampaignWave{
				wave(intstr.FromInt32(2), map[string]string{"canary": "true"}), wave(intstr.FromString("50%"), nil)}},
			candidates: concat(cands("a", "a", 8), cands("b", "canary", 2, "canary", "true")),
			wantSizes:  []int{2, 5, 3},
			wantIn:     map[int32][]string{1: {"b/canary-00", "b/canary-01"}},
		},
		{
			name: "a canary wave is smaller when fewer match",
			spec: v1alpha1.CampaignSpec{Waves: []v1alpha1.CampaignWave{
				wave(intstr.FromString("50%"), map[string]string{"canary": "true"}), wave(intstr.FromString("100%"), nil)}},
			candidates: concat(cands("a", "a", 8), cands("a", "canary", 2, "canary", "true")),
			wantSizes:  []int{2, 8},
			wantIn:     map[int32][]string{1: {"a/canary-00", "a/canary-01"}},
		},
		{
			name: "a canary wave takes its size of the matching members in spread order",
			spec: v1alpha1.CampaignSpec{Waves: []v1alpha1.CampaignWave{
				wave(intstr.FromInt32(2), map[string]string{"canary": "true"}), wave(intstr.FromString("100%"), nil)}},
			candidates: concat(cands("a", "ca", 3, "canary", "true"), cands("b", "cb", 3, "canary", "true"), cands("b", "b", 3)),
			wantSizes:  []int{2, 7},
			wantIn:     map[int32][]string{1: {"a/ca-00", "b/cb-00"}},
		},
		{
			// b is two members ahead after the canaries: a catches up first.
			name: "after a canary wave, any prefix of the plan is still spread",
			spec: v1alpha1.CampaignSpec{Waves: []v1alpha1.CampaignWave{
				wave(intstr.FromInt32(2), map[string]string{"canary": "true"}), wave(intstr.FromInt32(2), nil)}},
			candidates: concat(cands("a", "a", 4), cands("b", "b-0", 2, "canary", "true"), cands("b", "b-1", 2)),
			wantSizes:  []int{2, 2, 2, 2},
			wantIn:     map[int32][]string{1: {"b/b-0-00", "b/b-0-01"}, 2: {"a/a-00", "a/a-01"}, 3: {"a/a-02", "b/b-1-00"}, 4: {"a/a-03", "b/b-1-01"}},
		},
		{
			name: "an earlier wave whose selector matches nothing is empty, its number kept",
			spec: v1alpha1.CampaignSpec{Waves: []v1alpha1.CampaignWave{
				wave(intstr.FromInt32(1), map[string]string{"canary": "true"}), wave(intstr.FromString("100%"), nil)}},
			candidates: twenty,
			wantSizes:  []int{0, 20},
		},
		{
			name: "a repeated last entry takes its matching members first, then drops its selector",
			spec: v1alpha1.CampaignSpec{Waves: []v1alpha1.CampaignWave{
				wave(intstr.FromInt32(2), map[string]string{"rack": "r1"})}},
			candidates: concat(cands("a", "r1", 5, "rack", "r1"), cands("a", "r2", 3, "rack", "r2")),
			wantSizes:  []int{2, 2, 1, 2, 1},
			wantIn:     map[int32][]string{3: {"a/r1-04"}, 4: {"a/r2-00", "a/r2-01"}, 5: {"a/r2-02"}},
		},
		{
			name: "a last entry whose selector matches nothing at all drops it at once",
			spec: v1alpha1.CampaignSpec{Waves: []v1alpha1.CampaignWave{
				wave(intstr.FromInt32(1), map[string]string{"canary": "true"}),
				wave(intstr.FromString("50%"), map[string]string{"rack": "none"})}},
			candidates: twenty,
			wantSizes:  []int{0, 10, 10},
		},
		{
			name: "a selector that does not parse (validation refuses it) selects everything",
			spec: v1alpha1.CampaignSpec{Waves: []v1alpha1.CampaignWave{
				{Size: intstr.FromInt32(3), Selector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
					{Key: "rack", Operator: "Near"}}}},
				wave(intstr.FromString("100%"), nil)}},
			candidates: twenty,
			wantSizes:  []int{3, 17},
		},
		{
			name: "every entry empty but the last: each keeps its number",
			spec: v1alpha1.CampaignSpec{Waves: []v1alpha1.CampaignWave{
				wave(intstr.FromInt32(1), map[string]string{"x": "1"}),
				wave(intstr.FromInt32(1), map[string]string{"x": "2"}),
				wave(intstr.FromInt32(1), map[string]string{"x": "3"}),
				wave(intstr.FromString("100%"), nil)}},
			candidates: twenty,
			wantSizes:  []int{0, 0, 0, 20},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := NewPlan(&tc.spec, tc.candidates, tc.osVersion)
			if got := waveSizes(p); !reflect.DeepEqual(got, tc.wantSizes) {
				t.Errorf("wave sizes %v, want %v (plan %v)", got, tc.wantSizes, names(p))
			}
			if got, want := p.Waves(), int32(len(tc.wantSizes)); got != want {
				t.Errorf("Waves() = %d, want %d", got, want)
			}
			waveOf := map[string]int32{}
			for _, m := range p.Members {
				waveOf[m.Datacenter+"/"+m.Name] = m.Wave
			}
			for w, want := range tc.wantIn {
				for _, n := range want {
					if waveOf[n] != w {
						t.Errorf("%s is in wave %d, want %d (plan %v)", n, waveOf[n], w, names(p))
					}
				}
			}
		})
	}
}

func TestNewPlanSpread(t *testing.T) {
	candidates := []Candidate{
		cand("a", "a3", "rack", "r1"),
		cand("a", "a1", "rack", "r1"),
		cand("a", "a4", "rack", "r2"),
		cand("a", "a2", "rack", "r1"),
		cand("c", "c2", "rack", "r3"),
		cand("b", "b1", "rack", "r1"),
		cand("c", "c1", "rack", "r3"),
		cand("a", "a5"), // no rack: its own domain "", first in order
	}
	tests := []struct {
		name        string
		domainLabel string
		want        []string
	}{
		{
			// a's order: a5 (""), a1 (r1), a4 (r2), a2 (r1), a3 (r1).
			name:        "round robin over datacenters, then over each datacenter's failure domains",
			domainLabel: "rack",
			want:        []string{"a/a5", "b/b1", "c/c1", "a/a1", "c/c2", "a/a4", "a/a2", "a/a3"},
		},
		{
			name: "without failureDomainLabel: names in order within each datacenter",
			want: []string{"a/a1", "b/b1", "c/c1", "a/a2", "c/c2", "a/a3", "a/a4", "a/a5"},
		},
	}
	byName := map[string]Candidate{}
	for _, c := range candidates {
		byName[c.Name] = c
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			spec := v1alpha1.CampaignSpec{FailureDomainLabel: tc.domainLabel,
				Waves: []v1alpha1.CampaignWave{wave(intstr.FromInt32(3), nil)}}
			p := NewPlan(&spec, candidates, nil)
			var got []string
			for _, m := range p.Members {
				got = append(got, m.Datacenter+"/"+m.Name)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("order %v, want %v", got, tc.want)
			}
			for i, m := range p.Members {
				if want := int32(i/3 + 1); m.Wave != want {
					t.Errorf("%s/%s in wave %d, want %d", m.Datacenter, m.Name, m.Wave, want)
				}
				wantDomain := ""
				if tc.domainLabel != "" {
					wantDomain = byName[m.Name].Labels["rack"]
				}
				if m.Domain != wantDomain {
					t.Errorf("%s/%s in domain %q, want %q", m.Datacenter, m.Name, m.Domain, wantDomain)
				}
			}
		})
	}
}

// TestNewPlanSpreadPrefix checks that every prefix of the start order is
// spread when no wave has a selector.
func TestNewPlanSpreadPrefix(t *testing.T) {
	candidates := concat(
		cands("a", "a-r1", 7, "rack", "r1"), cands("a", "a-r2", 3, "rack", "r2"),
		cands("b", "b-r1", 4, "rack", "r1"),
		cands("c", "c-r1", 5, "rack", "r1"), cands("c", "c-r2", 5, "rack", "r2"), cands("c", "c-r3", 1, "rack", "r3"),
	)
	spec := v1alpha1.CampaignSpec{FailureDomainLabel: "rack", Waves: []v1alpha1.CampaignWave{
		wave(intstr.FromInt32(1), nil), wave(intstr.FromInt32(3), nil), wave(intstr.FromString("25%"), nil)}}
	checkPrefixesSpread(t, "plan", NewPlan(&spec, candidates, nil).Members)
}

// checkPrefixesSpread fails when, in some prefix of members, a datacenter
// is more than one member ahead of another that still has members left, or
// a failure domain more than one ahead of another of its datacenter.
func checkPrefixesSpread(t *testing.T, desc string, members []Member) {
	t.Helper()
	scopes := ScopesOf(members)
	taken := map[string]int{}
	takenDomain := map[string]int{}
	for i, m := range members {
		taken[m.Datacenter]++
		takenDomain[m.DomainKey()]++
		for other, size := range scopes.DC {
			if taken[other] < size && taken[m.Datacenter] > taken[other]+1 {
				t.Fatalf("%s: after %d members, %s has %d and %s only %d of its %d", desc, i+1, m.Datacenter, taken[m.Datacenter], other, taken[other], size)
			}
		}
		for other, size := range scopes.Domain {
			if !strings.HasPrefix(other, m.Datacenter+"/") {
				continue
			}
			if takenDomain[other] < size && takenDomain[m.DomainKey()] > takenDomain[other]+1 {
				t.Fatalf("%s: after %d members, domain %s has %d and %s only %d of its %d", desc, i+1, m.DomainKey(), takenDomain[m.DomainKey()], other, takenDomain[other], size)
			}
		}
	}
}

func TestNewPlanDeterministic(t *testing.T) {
	candidates := concat(
		cands("a", "a-r1", 7, "rack", "r1", "canary", "true"), cands("a", "a-r2", 3, "rack", "r2"),
		cands("b", "b-r1", 4, "rack", "r1"), cands("c", "c-r2", 9, "rack", "r2"),
	)
	spec := v1alpha1.CampaignSpec{FailureDomainLabel: "rack", Waves: []v1alpha1.CampaignWave{
		wave(intstr.FromInt32(2), map[string]string{"canary": "true"}), wave(intstr.FromString("25%"), nil)}}
	want := NewPlan(&spec, candidates, nil)
	rng := rand.New(rand.NewSource(1))
	for i := range 20 {
		t.Run(fmt.Sprintf("shuffle %d", i), func(t *testing.T) {
			shuffled := append([]Candidate(nil), candidates...)
			rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
			if got := NewPlan(&spec, shuffled, nil); !reflect.DeepEqual(got, want) {
				t.Errorf("plan of shuffled candidates\n%v\nwant\n%v", names(got), names(want))
			}
		})
	}
}

func TestPlanStatus(t *testing.T) {
	spec := v1alpha1.CampaignSpec{Operation: v1alpha1.OperationRepave, SkipUpToDate: ptr.To(true),
		Waves: []v1alpha1.CampaignWave{wave(intstr.FromInt32(1), nil), wave(intstr.FromString("100%"), nil)}}
	candidates := concat(cands("b", "b", 3), cands("a", "a", 6))
	candidates = append(candidates, Candidate{Datacenter: "c", Name: "c-00", CurrentOS: "os-2"},
		Candidate{Datacenter: "b", Name: "b-09", CurrentOS: "os-2"})
	p := NewPlan(&spec, candidates, map[string]string{"b": "os-2", "c": "os-2"})

	waves, counts, dcs := p.Status()

	wantCounts := v1alpha1.CampaignCounts{Targets: 11, Skipped: 2, Pending: 9}
	if counts != wantCounts {
		t.Errorf("counts %+v, want %+v", counts, wantCounts)
	}
	wantDCs := []v1alpha1.CampaignDatacenterStatus{
		{Name: "a", Counts: v1alpha1.CampaignCounts{Targets: 6, Pending: 6}},
		{Name: "b", Counts: v1alpha1.CampaignCounts{Targets: 4, Skipped: 1, Pending: 3}},
		{Name: "c", Counts: v1alpha1.CampaignCounts{Targets: 1, Skipped: 1}},
	}
	if !reflect.DeepEqual(dcs, wantDCs) {
		t.Errorf("datacenters %+v, want %+v", dcs, wantDCs)
	}
	wantWaves := []v1alpha1.CampaignWavePlan{
		{Number: 1, Members: 1, Datacenters: []v1alpha1.CampaignDatacenterPlan{{Name: "a", Members: 1}},
			FirstMembers: []string{"a/a-00"}},
		{Number: 2, Members: 8, Datacenters: []v1alpha1.CampaignDatacenterPlan{{Name: "a", Members: 5}, {Name: "b", Members: 3}},
			FirstMembers: []string{"b/b-00", "a/a-01", "b/b-01", "a/a-02", "b/b-02"}},
	}
	if !reflect.DeepEqual(waves, wantWaves) {
		t.Errorf("plan %+v, want %+v", waves, wantWaves)
	}
}

func TestPlanStatusEmpty(t *testing.T) {
	p := NewPlan(&v1alpha1.CampaignSpec{}, nil, nil)
	waves, counts, dcs := p.Status()
	if waves != nil || counts != (v1alpha1.CampaignCounts{}) || dcs != nil {
		t.Errorf("Status of an empty plan = %+v, %+v, %+v; want nothing", waves, counts, dcs)
	}
	if p.Waves() != 0 {
		t.Errorf("Waves() = %d, want 0", p.Waves())
	}
}

func TestPlanWaves(t *testing.T) {
	m := func(dc, name string, w int32) Member { return Member{Datacenter: dc, Name: name, Wave: w} }
	tests := []struct {
		name    string
		members []Member
		shown   int
		want    []v1alpha1.CampaignWavePlan
	}{
		{name: "no members, no waves", members: nil, shown: 5, want: nil},
		{
			name:    "empty waves before, between and after none",
			members: []Member{m("a", "1", 2), m("b", "1", 2), m("a", "2", 4)},
			shown:   5,
			want: []v1alpha1.CampaignWavePlan{
				{Number: 1},
				{Number: 2, Members: 2, Datacenters: []v1alpha1.CampaignDatacenterPlan{{Name: "a", Members: 1}, {Name: "b", Members: 1}},
					FirstMembers: []string{"a/1", "b/1"}},
				{Number: 3},
				{Number: 4, Members: 1, Datacenters: []v1alpha1.CampaignDatacenterPlan{{Name: "a", Members: 1}},
					FirstMembers: []string{"a/2"}},
			},
		},
		{
			name:    "firstMembers capped, datacenters sorted by name",
			members: []Member{m("z", "1", 1), m("a", "1", 1), m("z", "2", 1), m("a", "2", 1)},
			shown:   2,
			want: []v1alpha1.CampaignWavePlan{
				{Number: 1, Members: 4, Datacenters: []v1alpha1.CampaignDatacenterPlan{{Name: "a", Members: 2}, {Name: "z", Members: 2}},
					FirstMembers: []string{"z/1", "a/1"}},
			},
		},
		{
			name:    "shown 0 lists no names",
			members: []Member{m("a", "1", 1)},
			shown:   0,
			want: []v1alpha1.CampaignWavePlan{
				{Number: 1, Members: 1, Datacenters: []v1alpha1.CampaignDatacenterPlan{{Name: "a", Members: 1}}},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := PlanWaves(tc.members, tc.shown); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("PlanWaves = %+v, want %+v", got, tc.want)
			}
		})
	}
}

// TestNewPlanProperties draws random members and waves (fixed seed) and
// checks what holds of every plan: each non-skipped candidate is in exactly
// one wave, waves do not decrease in start order, no wave is larger than
// its entry's size, a wave of an earlier entry holds only members its
// selector matches, and the plan does not depend on the candidates' order.
func TestNewPlanProperties(t *testing.T) {
	rng := rand.New(rand.NewSource(14))
	for iteration := range 300 {
		spec, candidates, osVersion := randomCampaign(rng)
		p := NewPlan(&spec, candidates, osVersion)
		desc := fmt.Sprintf("iteration %d: %d candidates, waves %s", iteration, len(candidates), describeWaves(spec.Waves))

		skip := spec.Operation == v1alpha1.OperationRepave && ptr.Deref(spec.SkipUpToDate, true)
		want := map[string]bool{}
		wantSkipped := 0
		for _, c := range candidates {
			if v := osVersion[c.Datacenter]; skip && v != "" && c.CurrentOS == v {
				wantSkipped++
				continue
			}
			want[c.Datacenter+"/"+c.Name] = true
		}
		gotSkipped := 0
		for _, n := range p.Skipped {
			gotSkipped += int(n)
		}
		if gotSkipped != wantSkipped {
			t.Fatalf("%s: skipped %d, want %d", desc, gotSkipped, wantSkipped)
		}
		seen := map[string]bool{}
		var last int32 = 1
		for _, m := range p.Members {
			key := m.Datacenter + "/" + m.Name
			if !want[key] {
				t.Fatalf("%s: %s is a member but not a non-skipped candidate", desc, key)
			}
			if seen[key] {
				t.Fatalf("%s: %s is in more than one wave", desc, key)
			}
			seen[key] = true
			if m.Wave < last {
				t.Fatalf("%s: wave %d of %s after wave %d", desc, m.Wave, key, last)
			}
			last = m.Wave
		}
		if len(seen) != len(want) {
			t.Fatalf("%s: %d members, want %d", desc, len(seen), len(want))
		}
		waves := spec.Waves
		if len(waves) == 0 {
			waves = []v1alpha1.CampaignWave{{Size: v1alpha1.DefaultCampaignWaveSize}}
		}
		byName := map[string]Candidate{}
		for _, c := range candidates {
			byName[c.Datacenter+"/"+c.Name] = c
		}
		for i, n := range waveSizes(p) {
			number := i + 1
			entry := waves[min(number, len(waves))-1]
			if limit := Size(entry.Size, len(want)); n > limit {
				t.Fatalf("%s: wave %d has %d members, over its size %d", desc, number, n, limit)
			}
		}
		for _, m := range p.Members {
			if int(m.Wave) >= len(waves) || waves[m.Wave-1].Selector == nil {
				continue
			}
			if c := byName[m.Datacenter+"/"+m.Name]; c.Labels["group"] != waves[m.Wave-1].Selector.MatchLabels["group"] {
				t.Fatalf("%s: %s/%s (group %q) in wave %d whose selector is %v", desc, m.Datacenter, m.Name,
					c.Labels["group"], m.Wave, waves[m.Wave-1].Selector.MatchLabels)
			}
		}
		if !slices.ContainsFunc(waves, func(w v1alpha1.CampaignWave) bool { return w.Selector != nil }) {
			checkPrefixesSpread(t, desc, p.Members)
		}
		shuffled := append([]Candidate(nil), candidates...)
		rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		if again := NewPlan(&spec, shuffled, osVersion); !reflect.DeepEqual(again, p) {
			t.Fatalf("%s: the plan changes with the candidates' order", desc)
		}
	}
}

// randomCampaign draws a spec, up to 150 candidates over up to 4
// datacenters and their osVersions.
func randomCampaign(rng *rand.Rand) (v1alpha1.CampaignSpec, []Candidate, map[string]string) {
	spec := v1alpha1.CampaignSpec{Operation: v1alpha1.OperationReboot}
	if rng.Intn(2) == 0 {
		spec.Operation = v1alpha1.OperationRepave
		spec.SkipUpToDate = []*bool{nil, ptr.To(true), ptr.To(false)}[rng.Intn(3)]
	}
	if rng.Intn(2) == 0 {
		spec.FailureDomainLabel = "rack"
	}
	for range rng.Intn(5) {
		w := v1alpha1.CampaignWave{Size: intstr.FromInt32(int32(rng.Intn(12)))}
		if rng.Intn(2) == 0 {
			w.Size = intstr.FromString(fmt.Sprintf("%d%%", rng.Intn(101)))
		}
		if rng.Intn(3) == 0 {
			w.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"group": fmt.Sprint(rng.Intn(4))}}
		}
		spec.Waves = append(spec.Waves, w)
	}
	osVersion := map[string]string{}
	var candidates []Candidate
	dcs := 1 + rng.Intn(4)
	for d := range dcs {
		dc := fmt.Sprintf("dc-%d", d)
		if rng.Intn(3) > 0 {
			osVersion[dc] = "os-2"
		}
		for i := range rng.Intn(1 + 150/dcs) {
			c := cand(dc, fmt.Sprintf("hw-%03d", i), "group", fmt.Sprint(rng.Intn(3)))
			if r := rng.Intn(4); r > 0 {
				c.Labels["rack"] = fmt.Sprintf("r%d", r)
			}
			c.CurrentOS = []string{"", "os-1", "os-2"}[rng.Intn(3)]
			candidates = append(candidates, c)
		}
	}
	return spec, candidates, osVersion
}

func describeWaves(waves []v1alpha1.CampaignWave) string {
	var parts []string
	for _, w := range waves {
		s := w.Size.String()
		if w.Selector != nil {
			s += fmt.Sprintf("%v", w.Selector.MatchLabels)
		}
		parts = append(parts, s)
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// BenchmarkNewPlanWavesOfOne is the worst case a dry run can ask for:
// 100,000 members in waves of one.
func BenchmarkNewPlanWavesOfOne(b *testing.B) {
	var candidates []Candidate
	for d := range 10 {
		candidates = append(candidates, cands(fmt.Sprintf("dc-%d", d), "hw", 10000, "rack", "r1")...)
	}
	spec := v1alpha1.CampaignSpec{FailureDomainLabel: "rack", Waves: []v1alpha1.CampaignWave{
		wave(intstr.FromInt32(1), map[string]string{"rack": "r1"})}}
	for b.Loop() {
		NewPlan(&spec, candidates, nil)
	}
}
