package campaign

import (
	"cmp"
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/utils/ptr"

	"stargate.io/stargate/pkg/apis/stargate/v1alpha1"
)

// Candidate is a Hardware considered for a Campaign: it is in a selected
// datacenter and matches spec.hardwareSelector.
type Candidate struct {
	Datacenter, Name string
	Labels           map[string]string
	CurrentOS        string
}

// Member is a Hardware the Campaign operates on.
type Member struct {
	Datacenter, Name string
	// Domain is the value of spec.failureDomainLabel on the Hardware; ""
	// when the Campaign has none or the Hardware lacks the label (all such
	// Hardware of a datacenter then share one domain).
	Domain string
	// Wave is the member's wave, from 1.
	Wave int32
}

// DomainKey names a failure domain within its datacenter: racks with the
// same name in two datacenters are two domains.
func (m Member) DomainKey() string { return m.Datacenter + "/" + m.Domain }

// Plan is the fixed membership of a Campaign.
type Plan struct {
	// Members in start order: by wave; within a wave, in spread order over
	// the datacenters and, within each, over its failure domains (see
	// spreader).
	Members []Member
	// Skipped counts, per datacenter, the candidates already up to date.
	Skipped map[string]int32
	// FirstMembersShown is how many names Status lists per wave.
	FirstMembersShown int
}

// firstMembersShown is how many member names a wave's plan shows.
const firstMembersShown = 5

// NewPlan fixes the members of a Campaign from its candidates. osVersion
// maps each datacenter to the osVersion of the Campaign's Template there
// (repave only): with skipUpToDate (unset is true, its default for repave),
// a candidate already at it is skipped; a datacenter without an osVersion
// skips nothing.
//
// Waves are filled in order: wave i (the last entry of spec.waves repeating)
// takes up to its size (of all members, see Size) among the members not yet
// in a wave, only those its selector matches when it has one, in spread
// order (see spreader). An earlier entry whose selector matches none of the
// members left is an empty wave, its number kept. A repeated last entry
// whose selector matches none of the members left drops its selector, so
// every member gets a wave.
//
// The cost is O(n log n) in the members, times the number of entries: the
// repeated last entry sorts its members once, however many waves it makes.
func NewPlan(spec *v1alpha1.CampaignSpec, candidates []Candidate, osVersion map[string]string) *Plan {
	p := &Plan{Skipped: map[string]int32{}, FirstMembersShown: firstMembersShown}
	skip := spec.Operation == v1alpha1.OperationRepave && ptr.Deref(spec.SkipUpToDate, true)
	var remaining []Candidate
	for _, c := range candidates {
		if want, ok := osVersion[c.Datacenter]; skip && ok && want != "" && c.CurrentOS == want {
			p.Skipped[c.Datacenter]++
			continue
		}
		remaining = append(remaining, c)
	}
	total := len(remaining)
	waves := spec.Waves
	if len(waves) == 0 {
		waves = []v1alpha1.CampaignWave{{Size: v1alpha1.DefaultCampaignWaveSize}}
	}
	s := newSpreader(spec.FailureDomainLabel)
	number := int32(1)
	for _, entry := range waves[:len(waves)-1] {
		if len(remaining) == 0 {
			return p
		}
		matching, rest := partition(remaining, selectorOf(entry))
		matching = s.order(matching)
		n := min(Size(entry.Size, total), len(matching))
		p.add(s, matching[:n], number)
		remaining = append(rest, matching[n:]...)
		number++
	}
	// The last entry repeats: its waves take the members its selector
	// matches, then the others. Each group is put in order once; taking it
	// in chunks is the order each wave would have found for itself.
	last := waves[len(waves)-1]
	size := Size(last.Size, total)
	matching, rest := partition(remaining, selectorOf(last))
	for _, group := range [][]Candidate{matching, rest} {
		for group = s.order(group); len(group) > 0; number++ {
			n := min(size, len(group))
			p.add(s, group[:n], number)
			group = group[n:]
		}
	}
	return p
}

// add appends cs to p's members in wave number.
func (p *Plan) add(s *spreader, cs []Candidate, number int32) {
	for _, c := range cs {
		m := member(c, s.domainLabel, number)
		p.Members = append(p.Members, m)
		s.inWaves[m.Datacenter]++
		s.inWaves[m.DomainKey()]++
	}
}

// selectorOf is the selector of wave entry w: everything when it has none.
// Validation refuses a selector that does not parse; one that slips through
// selects everything.
func selectorOf(w v1alpha1.CampaignWave) labels.Selector {
	if w.Selector == nil {
		return labels.Everything()
	}
	s, err := metav1.LabelSelectorAsSelector(w.Selector)
	if err != nil {
		return labels.Everything()
	}
	return s
}

// partition splits cs into those selector matches and the others, each in
// the order of cs.
func partition(cs []Candidate, selector labels.Selector) (matching, rest []Candidate) {
	for _, c := range cs {
		if selector.Matches(labels.Set(c.Labels)) {
			matching = append(matching, c)
		} else {
			rest = append(rest, c)
		}
	}
	return matching, rest
}

func member(c Candidate, domainLabel string, wave int32) Member {
	return Member{Datacenter: c.Datacenter, Name: c.Name, Domain: domainOf(c, domainLabel), Wave: wave}
}

func domainOf(c Candidate, domainLabel string) string {
	if domainLabel == "" {
		return ""
	}
	return c.Labels[domainLabel]
}

// spreader puts candidates in spread order, so that any prefix of a plan
// is spread as evenly as the waves' selectors allow: each next member comes
// from the datacenter with the fewest members in waves so far (ties: the
// first by name), within it from the failure domain with the fewest (ties:
// the first by name), within that the first by name. With nobody in waves
// yet, that is round robin over the datacenters, each taking its next
// member round robin over its failure domains.
type spreader struct {
	domainLabel string
	// inWaves counts the members in waves so far per datacenter (keyed by
	// its name) and per failure domain (keyed by Member.DomainKey, which
	// always holds a "/").
	inWaves map[string]int
}

func newSpreader(domainLabel string) *spreader {
	return &spreader{domainLabel: domainLabel, inWaves: map[string]int{}}
}

// turn is a candidate with the count its datacenter (or failure domain)
// will have reached when the candidate's turn comes: taking candidates by
// turn, then by name, is the spread order.
type turn struct {
	c    Candidate
	turn int
	name string
}

func byTurn(a, b turn) int {
	return cmp.Or(cmp.Compare(a.turn, b.turn), cmp.Compare(a.name, b.name), cmp.Compare(a.c.Name, b.c.Name))
}

// order returns cs in spread order; it does not count them as in waves.
func (s *spreader) order(cs []Candidate) []Candidate {
	byDomain := map[string]map[string][]Candidate{}
	for _, c := range cs {
		if byDomain[c.Datacenter] == nil {
			byDomain[c.Datacenter] = map[string][]Candidate{}
		}
		d := domainOf(c, s.domainLabel)
		byDomain[c.Datacenter][d] = append(byDomain[c.Datacenter][d], c)
	}
	var all []turn
	for dc, domains := range byDomain {
		var inDC []turn
		for d, list := range domains {
			slices.SortFunc(list, func(a, b Candidate) int { return cmp.Compare(a.Name, b.Name) })
			for i, c := range list {
				inDC = append(inDC, turn{c: c, turn: s.inWaves[dc+"/"+d] + i, name: d})
			}
		}
		slices.SortFunc(inDC, byTurn)
		for i, t := range inDC {
			all = append(all, turn{c: t.c, turn: s.inWaves[dc] + i, name: dc})
		}
	}
	slices.SortFunc(all, byTurn)
	out := make([]Candidate, len(all))
	for i, t := range all {
		out[i] = t.c
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// Waves is the number of waves.
func (p *Plan) Waves() int32 {
	if len(p.Members) == 0 {
		return 0
	}
	return p.Members[len(p.Members)-1].Wave
}

// Status is status.plan, counts and datacenters as they stand before any
// Job: every member pending.
func (p *Plan) Status() (waves []v1alpha1.CampaignWavePlan, counts v1alpha1.CampaignCounts, dcs []v1alpha1.CampaignDatacenterStatus) {
	perDC := map[string]*v1alpha1.CampaignCounts{}
	at := func(dc string) *v1alpha1.CampaignCounts {
		if perDC[dc] == nil {
			perDC[dc] = &v1alpha1.CampaignCounts{}
		}
		return perDC[dc]
	}
	for dc, n := range p.Skipped {
		c := at(dc)
		c.Targets += n
		c.Skipped += n
		counts.Targets += n
		counts.Skipped += n
	}
	waves = PlanWaves(p.Members, p.FirstMembersShown)
	for _, m := range p.Members {
		c := at(m.Datacenter)
		c.Targets++
		c.Pending++
		counts.Targets++
		counts.Pending++
	}
	for _, dc := range sortedKeys(perDC) {
		dcs = append(dcs, v1alpha1.CampaignDatacenterStatus{Name: dc, Counts: *perDC[dc]})
	}
	return waves, counts, dcs
}

// PlanWaves summarizes members (in start order) per wave: size, share of
// each datacenter, and the first shown names as datacenter/name.
func PlanWaves(members []Member, shown int) []v1alpha1.CampaignWavePlan {
	var waves []v1alpha1.CampaignWavePlan
	var perDC map[string]int32
	flush := func() {
		w := &waves[len(waves)-1]
		for _, dc := range sortedKeys(perDC) {
			w.Datacenters = append(w.Datacenters, v1alpha1.CampaignDatacenterPlan{Name: dc, Members: perDC[dc]})
		}
	}
	for _, m := range members {
		for len(waves) == 0 || waves[len(waves)-1].Number < m.Wave {
			if len(waves) > 0 {
				flush()
			}
			waves = append(waves, v1alpha1.CampaignWavePlan{Number: int32(len(waves)) + 1})
			perDC = map[string]int32{}
		}
		w := &waves[len(waves)-1]
		w.Members++
		perDC[m.Datacenter]++
		if len(w.FirstMembers) < shown {
			w.FirstMembers = append(w.FirstMembers, m.Datacenter+"/"+m.Name)
		}
	}
	if len(waves) > 0 {
		flush()
	}
	if len(waves) > MaxWavesShown {
		waves = waves[:MaxWavesShown]
	}
	return waves
}

// MaxWavesShown caps status.plan: a Campaign of 100,000 waves of one
// member stays far below etcd's object size limit.
const MaxWavesShown = 50
