package campaign

import (
	"cmp"
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

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
	// Members in start order: by wave; within a wave, spread over the
	// datacenters and, within each, over its failure domains.
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
// (repave only): with skipUpToDate, a candidate already at it is skipped.
//
// Waves are filled in order: wave i (the last entry of spec.waves repeating)
// takes up to its size (of all members, see Size) among the members not yet
// in a wave, only those its selector matches when it has one, in the spread
// order. A repeated last entry whose selector matches none of the members
// left drops its selector, so every member gets a wave.
func NewPlan(spec *v1alpha1.CampaignSpec, candidates []Candidate, osVersion map[string]string) *Plan {
	p := &Plan{Skipped: map[string]int32{}, FirstMembersShown: firstMembersShown}
	skip := spec.Operation == v1alpha1.OperationRepave && spec.SkipUpToDate != nil && *spec.SkipUpToDate
	var kept []Candidate
	for _, c := range candidates {
		if want, ok := osVersion[c.Datacenter]; skip && ok && want != "" && c.CurrentOS == want {
			p.Skipped[c.Datacenter]++
			continue
		}
		kept = append(kept, c)
	}
	remaining := spread(kept, spec.FailureDomainLabel)
	total := len(remaining)
	waves := spec.Waves
	if len(waves) == 0 {
		waves = []v1alpha1.CampaignWave{{Size: v1alpha1.DefaultCampaignWaveSize}}
	}
	for number := int32(1); len(remaining) > 0; number++ {
		entry := waves[min(int(number)-1, len(waves)-1)]
		size := Size(entry.Size, total)
		selector := labels.Everything()
		if entry.Selector != nil {
			if s, err := metav1.LabelSelectorAsSelector(entry.Selector); err == nil {
				selector = s
			}
		}
		repeating := int(number) >= len(waves)
		if repeating && !anyMatches(remaining, selector) {
			selector = labels.Everything()
		}
		var left []Candidate
		for _, c := range remaining {
			if size > 0 && selector.Matches(labels.Set(c.Labels)) {
				p.Members = append(p.Members, member(c, spec.FailureDomainLabel, number))
				size--
				continue
			}
			left = append(left, c)
		}
		remaining = left
	}
	return p
}

func member(c Candidate, domainLabel string, wave int32) Member {
	m := Member{Datacenter: c.Datacenter, Name: c.Name, Wave: wave}
	if domainLabel != "" {
		m.Domain = c.Labels[domainLabel]
	}
	return m
}

func anyMatches(cs []Candidate, selector labels.Selector) bool {
	return slices.ContainsFunc(cs, func(c Candidate) bool { return selector.Matches(labels.Set(c.Labels)) })
}

// spread orders candidates so that any prefix is spread evenly: round robin
// over the datacenters, each taking its next member round robin over its
// failure domains; names sorted within a domain.
func spread(cs []Candidate, domainLabel string) []Candidate {
	byDC := map[string]map[string][]Candidate{}
	for _, c := range cs {
		if byDC[c.Datacenter] == nil {
			byDC[c.Datacenter] = map[string][]Candidate{}
		}
		d := ""
		if domainLabel != "" {
			d = c.Labels[domainLabel]
		}
		byDC[c.Datacenter][d] = append(byDC[c.Datacenter][d], c)
	}
	var perDC [][]Candidate
	for _, dc := range sortedKeys(byDC) {
		domains := byDC[dc]
		var lists [][]Candidate
		for _, d := range sortedKeys(domains) {
			list := domains[d]
			slices.SortFunc(list, func(a, b Candidate) int { return cmp.Compare(a.Name, b.Name) })
			lists = append(lists, list)
		}
		perDC = append(perDC, roundRobin(lists))
	}
	return roundRobin(perDC)
}

func roundRobin(lists [][]Candidate) []Candidate {
	var out []Candidate
	for i := 0; ; i++ {
		took := false
		for _, l := range lists {
			if i < len(l) {
				out = append(out, l[i])
				took = true
			}
		}
		if !took {
			return out
		}
	}
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
	return waves
}
