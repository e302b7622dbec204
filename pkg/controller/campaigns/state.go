package campaigns

import (
	"cmp"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"stargate.io/stargate/pkg/apis/stargate/v1alpha1"
	"stargate.io/stargate/pkg/apis/stargate/validation"
	"stargate.io/stargate/pkg/campaign"
)

// member is one member and what became of it.
type member struct {
	campaign.Member
	order  int
	state  string
	job    string
	reason string
	// cancelSent: this replica asked its running Job to cancel.
	cancelSent bool
	// counted is the UID of the Job its outcome was read from, by this
	// replica (not in the ledger: after a reload it is empty).
	counted types.UID
}

func (m *member) key() string { return m.Datacenter + "/" + m.Name }

func (m *member) final() bool {
	return m.state == stateSucceeded || m.state == stateFailed || m.state == stateCancelled
}

func (m *member) record() record {
	return record{Wave: m.Wave, Domain: m.Domain, State: m.state, Job: m.job, Reason: m.reason, Order: m.order}
}

// progress is a driven Campaign's members in memory, rebuilt from the
// ledger whenever a replica starts driving it; every change is written to
// the ledger first. Its counters change by one per member event, so a Job
// finishing costs O(1), not a pass over the members.
type progress struct {
	uid     types.UID
	members []*member // start order
	byKey   map[string]*member
	byDC    map[string][]*member // start order
	// cursor is, per datacenter, the index in byDC before which no member is pending.
	cursor map[string]int
	scopes campaign.Scopes
	waves  int32

	counts  map[string]*v1alpha1.CampaignCounts // per datacenter
	dcNames []string                            // the keys of counts, sorted
	// open counts, per wave and datacenter, the members not final.
	open map[int32]map[string]int
	// failures per scope.
	failed      int
	failedDC    map[string]int
	failedWave  map[int32]int
	failures    []v1alpha1.CampaignFailure
	started     int // members started and not final
	startedInDC map[string]int
	inFlight    map[*member]struct{} // the started members
	highestWave int32                // the highest wave with a member that got a Job
	// cancelledAll and cancelledDCs: the pending members of everything, or
	// of a datacenter, were given up already.
	cancelledAll bool
	cancelledDCs map[string]bool
	// failedRecently are members (datacenter/hardware) whose Job just
	// failed: their Hardware turns error in a write of its own, which the
	// troubled-Hardware cache may not have yet, so they count as
	// unavailable meanwhile. Kept across a reload (see load).
	failedRecently map[string]time.Time
}

// maxFailuresListed caps status.failures.
const maxFailuresListed = validation.MaxCampaignFailures

func newProgress(uid types.UID, recs map[string]record, skipped map[string]int32) *progress {
	p := &progress{uid: uid, inFlight: map[*member]struct{}{}, byKey: make(map[string]*member, len(recs)), byDC: map[string][]*member{}, cursor: map[string]int{}, counts: map[string]*v1alpha1.CampaignCounts{}, open: map[int32]map[string]int{},
		failedDC: map[string]int{}, failedWave: map[int32]int{}, startedInDC: map[string]int{}, cancelledDCs: map[string]bool{},
		failedRecently: map[string]time.Time{}}
	for key, rec := range recs {
		dc, name, _ := strings.Cut(key, "/")
		m := &member{Member: campaign.Member{Datacenter: dc, Name: name, Domain: rec.Domain, Wave: rec.Wave},
			order: rec.Order, state: rec.State, job: rec.Job, reason: rec.Reason}
		p.members = append(p.members, m)
	}
	slices.SortFunc(p.members, func(a, b *member) int { return cmp.Compare(a.order, b.order) })
	plain := make([]campaign.Member, len(p.members))
	for i, m := range p.members {
		plain[i] = m.Member
		p.byKey[m.key()] = m
		p.byDC[m.Datacenter] = append(p.byDC[m.Datacenter], m)
		p.waves = max(p.waves, m.Wave)
		p.countIn(m, +1)
	}
	for dc, n := range skipped {
		c := p.dc(dc)
		c.Targets += n
		c.Skipped += n
	}
	p.scopes = campaign.ScopesOf(plain)
	for dc := range p.counts {
		p.dcNames = append(p.dcNames, dc)
	}
	slices.Sort(p.dcNames)
	return p
}

func (p *progress) dc(name string) *v1alpha1.CampaignCounts {
	c := p.counts[name]
	if c == nil {
		c = &v1alpha1.CampaignCounts{}
		p.counts[name] = c
	}
	return c
}

// countIn adds (sign +1) or removes (-1) m, in its current state, from
// every counter.
func (p *progress) countIn(m *member, sign int) {
	c := p.dc(m.Datacenter)
	if sign > 0 {
		c.Targets++
	} else {
		c.Targets--
	}
	d := int32(sign)
	switch m.state {
	case statePending:
		c.Pending += d
	case stateStarted:
		c.Running += d
		p.started += sign
		p.startedInDC[m.Datacenter] += sign
		if sign > 0 {
			p.inFlight[m] = struct{}{}
		} else {
			delete(p.inFlight, m)
		}
	case stateSucceeded:
		c.Succeeded += d
	case stateFailed:
		c.Failed += d
		p.failed += sign
		p.failedDC[m.Datacenter] += sign
		p.failedWave[m.Wave] += sign
	case stateCancelled:
		c.Cancelled += d
	}
	if !m.final() {
		if p.open[m.Wave] == nil {
			p.open[m.Wave] = map[string]int{}
		}
		p.open[m.Wave][m.Datacenter] += sign
	}
	if m.state != statePending && m.job != "" {
		// A member that got a Job: its wave was reached. Members given up
		// without one (a budget's Cancel gives up every wave of a
		// datacenter) say nothing of how far the waves went.
		p.highestWave = max(p.highestWave, m.Wave)
	}
	if sign > 0 && m.state == stateFailed && len(p.failures) < maxFailuresListed {
		p.failures = append(p.failures, v1alpha1.CampaignFailure{Datacenter: m.Datacenter, Hardware: m.Name, Job: m.job, Wave: m.Wave, Reason: m.reason})
	}
}

// set moves m to state (with its Job and reason), keeping the counters.
func (p *progress) set(m *member, state, job, reason string) {
	p.countIn(m, -1)
	m.state, m.job, m.reason = state, job, reason
	p.countIn(m, +1)
}

// total sums the per-datacenter counts.
func (p *progress) total() v1alpha1.CampaignCounts {
	var t v1alpha1.CampaignCounts
	for _, c := range p.counts {
		t.Targets += c.Targets
		t.Skipped += c.Skipped
		t.Pending += c.Pending
		t.Running += c.Running
		t.Succeeded += c.Succeeded
		t.Failed += c.Failed
		t.Cancelled += c.Cancelled
	}
	return t
}

// waveDone reports whether every member of wave w is final, leaving out
// the datacenters in exempt (their share was paused or cancelled by their
// own failure budget, so the other datacenters go on without them).
func (p *progress) waveDone(w int32, exempt map[string]bool) bool {
	for dc, n := range p.open[w] {
		if n > 0 && !exempt[dc] {
			return false
		}
	}
	return true
}

// pendingIn yields the pending members of datacenter dc in waves up to
// wave, in start order, moving the datacenter's cursor past members no
// longer pending.
func (p *progress) pendingIn(dc string, wave int32, yield func(*member) bool) {
	list := p.byDC[dc]
	i := p.cursor[dc]
	for i < len(list) && list[i].state != statePending {
		i++
	}
	p.cursor[dc] = i
	for ; i < len(list) && list[i].Wave <= wave; i++ {
		if list[i].state == statePending && !yield(list[i]) {
			return
		}
	}
}

// datacenters lists the member datacenters, sorted (fixed with the members).
func (p *progress) datacenters() []string { return p.dcNames }
