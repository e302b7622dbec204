//go:build faults

package faults

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	clientset "stargate.io/stargate/pkg/generated/clientset/versioned"
	"stargate.io/stargate/test/framework"
)

// answers counts the API's answers per operation and code.
type answers struct {
	mu         sync.Mutex
	byOp       map[string]map[string]int // op -> "code" or "code Reason" -> count
	total      int
	s5xx       int
	unexpected []string
	latency    map[string][]time.Duration
}

// took records how long a request of op took.
func (a *answers) took(op string, began time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.latency[op] = append(a.latency[op], time.Since(began))
}

// medians is the median latency per op.
func (a *answers) medians() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var parts []string
	for op, ds := range a.latency {
		ds = slices.Clone(ds)
		slices.Sort(ds)
		parts = append(parts, fmt.Sprintf("%s %s", op, ds[len(ds)/2].Round(100*time.Microsecond)))
	}
	slices.Sort(parts)
	return strings.Join(parts, ", ")
}

// note records the answer to op (nil: success, counted as code 200) and
// whether it was one of the allowed: success, 409 or 422.
func (a *answers) note(op string, err error) bool {
	code, answer := 200, "200"
	if err != nil {
		code, answer = 0, "no answer"
		var status apierrors.APIStatus
		if errors.As(err, &status) {
			code = int(status.Status().Code)
			answer = strings.TrimSpace(fmt.Sprintf("%d %s", code, status.Status().Reason))
			if f := causeField(err); f != "" {
				answer += " (" + f + ")"
			}
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.byOp[op] == nil {
		a.byOp[op] = map[string]int{}
	}
	a.byOp[op][answer]++
	a.total++
	if code >= 500 {
		a.s5xx++
	}
	if code != 200 && code != 409 && code != 422 {
		a.unexpected = append(a.unexpected, fmt.Sprintf("%s: %v", op, err))
	}
	return err == nil
}

func (a *answers) String() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var ops []string
	for op := range a.byOp {
		ops = append(ops, op)
	}
	slices.Sort(ops)
	var parts []string
	for _, op := range ops {
		var codes []string
		for c := range a.byOp[op] {
			codes = append(codes, c)
		}
		slices.Sort(codes)
		var cs []string
		for _, c := range codes {
			cs = append(cs, fmt.Sprintf("%d×%s", a.byOp[op][c], c))
		}
		parts = append(parts, op+" "+strings.Join(cs, ", "))
	}
	return strings.Join(parts, "; ")
}

// causeField is the field a refusal names as its cause, if any: spec.mac or
// spec.ipv4 for an identity held by another Hardware; none for a name taken.
func causeField(err error) string {
	var status apierrors.APIStatus
	if errors.As(err, &status) && status.Status().Details != nil {
		for _, c := range status.Status().Details.Causes {
			if c.Field != "" {
				return c.Field
			}
		}
	}
	return ""
}

// spell writes mac (lower-case colon form) in one of the forms the API accepts.
func spell(mac string, form int) string {
	switch form % 4 {
	case 1:
		return strings.ToUpper(mac)
	case 2:
		return strings.ToUpper(strings.ReplaceAll(mac, ":", "-"))
	case 3:
		h := strings.ReplaceAll(mac, ":", "")
		return h[0:4] + "." + h[4:8] + "." + h[8:12]
	}
	return mac
}

// TestRacingMACUpdates races MAC claims through kube-apiserver's aggregator:
// 200 rounds, each {update Hardware A's spec.mac to M} against {create
// Hardware B with mac M} (B in the other datacenter, or the same; by merge
// patch or by read-modify-write update; one round in four a third create
// with M joins), and one round in four {delete A and re-create it at once
// with its MAC, the re-create racing the delete} against {create B with
// A's MAC}. Every answer must be a
// success, 409 or 422 (never a 5xx), no round may have two winners, and at
// the end no two Hardware share a MAC; every MAC held must still be claimed
// (a create of another Hardware with it gets 409).
func TestRacingMACUpdates(t *testing.T) {
	const rounds, workers = 200, 32
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	agg, err := clientset.NewForConfig(env.RESTConfig("admin", 0))
	if err != nil {
		t.Fatal(err)
	}
	type round struct {
		kind     int
		nsA, nsB string
		a, b, b2 string
		macA, m  string
	}
	rs := make([]round, rounds)
	for i := range rs {
		a := hardware(fmt.Sprintf("mr-a-%03d", i))
		m := hardware("").Spec.MAC // a MAC no Hardware has yet
		rs[i] = round{kind: i % 4, nsA: datacenters[i%2], nsB: datacenters[(i/2)%2], a: a.Name,
			b: fmt.Sprintf("mr-b-%03d", i), b2: fmt.Sprintf("mr-c-%03d", i), macA: a.Spec.MAC, m: m}
		if _, err := sg.StargateV1alpha1().Hardwares(rs[i].nsA).Create(ctx, a, metav1.CreateOptions{}); err != nil {
			t.Fatalf("creating Hardware %s/%s: %v", rs[i].nsA, a.Name, err)
		}
	}

	got := &answers{byOp: map[string]map[string]int{}, latency: map[string][]time.Duration{}}
	// Under this load a request takes 100-200ms and an update longer than
	// a create: the create side of round i starts late by a delay swept
	// from 0 to 120ms (plus up to 5ms at random), so that both sides win
	// rounds and the claims meet at every offset in between.
	seed := time.Now().UnixNano()
	t.Logf("random seed %d", seed)
	var rngMu sync.Mutex
	rng := rand.New(rand.NewPCG(uint64(seed), 1))
	lateBy := func(i int) time.Duration {
		rngMu.Lock()
		defer rngMu.Unlock()
		return time.Duration((i/4)%25)*5*time.Millisecond + time.Duration(rng.IntN(5000))*time.Microsecond
	}
	after := func(d time.Duration, step func() bool) func() bool {
		return func() bool {
			time.Sleep(d)
			return step()
		}
	}
	var winsMu sync.Mutex
	wins := map[string]int{}
	var twoWinners []string
	twoWinnersBy := map[string]int{}
	kinds := []string{"patch vs create", "update vs create", "patch vs 2 creates", "delete+re-create vs create"}
	var winnersMu sync.Mutex
	// race runs the steps at once (from a common start) and returns which succeeded.
	race := func(steps ...func() bool) []bool {
		won := make([]bool, len(steps))
		start := make(chan struct{})
		var wg sync.WaitGroup
		for k, step := range steps {
			wg.Go(func() {
				<-start
				won[k] = step()
			})
		}
		close(start)
		wg.Wait()
		return won
	}
	createB := func(ns, name, mac string, form int) func() bool {
		return func() bool {
			hw := hardware(name)
			hw.Spec.MAC = spell(mac, form)
			began := time.Now()
			_, err := agg.StargateV1alpha1().Hardwares(ns).Create(ctx, hw, metav1.CreateOptions{})
			got.took("create", began)
			return got.note("create", err)
		}
	}
	patchMAC := func(ns, name, mac string, form int) func() bool {
		return func() bool {
			patch := fmt.Sprintf(`{"spec":{"mac":%q}}`, spell(mac, form))
			began := time.Now()
			_, err := agg.StargateV1alpha1().Hardwares(ns).Patch(ctx, name, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
			got.took("patch", began)
			return got.note("patch", err)
		}
	}
	// updateMAC reads the Hardware now and returns the step that writes it
	// back (PUT, with the resourceVersion read) with the new MAC.
	updateMAC := func(ns, name, mac string, form int) func() bool {
		hw, err := agg.StargateV1alpha1().Hardwares(ns).Get(ctx, name, metav1.GetOptions{})
		if !got.note("get", err) {
			return func() bool { return false }
		}
		hw.Spec.MAC = spell(mac, form)
		return func() bool {
			began := time.Now()
			_, err := agg.StargateV1alpha1().Hardwares(ns).Update(ctx, hw, metav1.UpdateOptions{})
			got.took("update", began)
			return got.note("update", err)
		}
	}
	start := time.Now()
	err = framework.FanOut(ctx, rounds, workers, func(i int) error {
		r := rs[i]
		var won []bool
		late := lateBy(i)
		switch r.kind {
		case 0:
			won = race(patchMAC(r.nsA, r.a, r.m, i), after(late, createB(r.nsB, r.b, r.m, i+1)))
		case 1:
			won = race(updateMAC(r.nsA, r.a, r.m, i), after(late, createB(r.nsA, r.b, r.m, i+2)))
		case 2:
			won = race(patchMAC(r.nsA, r.a, r.m, i), after(late, createB(r.nsB, r.b, r.m, i+1)),
				after(late/2, createB(r.nsA, r.b2, r.m, i+3)))
		case 3:
			// A is deleted while it is re-created under the same name and
			// MAC, again and again (as a controller that recreates what it
			// owns would), until the name is free; and B takes A's MAC.
			del := func() bool {
				return got.note("delete", agg.StargateV1alpha1().Hardwares(r.nsA).Delete(ctx, r.a, metav1.DeleteOptions{}))
			}
			recreate := func() bool {
				hw := hardware(r.a)
				hw.Spec.MAC = spell(r.macA, i)
				for range 500 {
					_, err := agg.StargateV1alpha1().Hardwares(r.nsA).Create(ctx, hw.DeepCopy(), metav1.CreateOptions{})
					if got.note("re-create", err) {
						return true
					}
					// The name, or the MAC under A's own name, is still taken:
					// the old A is not gone yet. Refused for B's sake: done.
					if !apierrors.IsAlreadyExists(err) || causeField(err) != "" && !strings.Contains(err.Error(), r.nsA+"/"+r.a) {
						return false
					}
					time.Sleep(time.Millisecond)
				}
				return false
			}
			won = race(del, after(late/4, recreate), after(late, createB(r.nsB, r.b, r.macA, i+1)))
			won = won[1:] // the delete claims nothing
		}
		side := "none"
		switch {
		case won[0]:
			side = map[bool]string{true: "re-create", false: "update"}[r.kind == 3]
		case slices.Contains(won[1:], true):
			side = "create"
		}
		winsMu.Lock()
		wins[side]++
		winsMu.Unlock()
		if n := len(slices.DeleteFunc(won, func(w bool) bool { return !w })); n > 1 {
			winnersMu.Lock()
			twoWinners = append(twoWinners, fmt.Sprintf("round %d (%s): %d requests claimed one MAC and all succeeded", i, kinds[r.kind], n))
			twoWinnersBy[kinds[r.kind]]++
			winnersMu.Unlock()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	for _, w := range twoWinners {
		t.Error(w)
	}
	for _, u := range got.unexpected {
		t.Errorf("unexpected answer: %s", u)
	}

	// No two Hardware share a MAC (in any namespace) or an IPv4 (in one namespace).
	holders := func() (map[string][]string, int) {
		list, err := sg.StargateV1alpha1().Hardwares("").List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatalf("listing Hardware: %v", err)
		}
		byMAC, byIP := map[string][]string{}, map[string][]string{}
		for _, hw := range list.Items {
			mac := hw.Spec.MAC
			if parsed, err := net.ParseMAC(mac); err == nil {
				mac = parsed.String()
			}
			byMAC[mac] = append(byMAC[mac], hw.Namespace+"/"+hw.Name)
			byIP[hw.Namespace+"/"+hw.Spec.IPv4] = append(byIP[hw.Namespace+"/"+hw.Spec.IPv4], hw.Namespace+"/"+hw.Name)
		}
		shared := 0
		for mac, names := range byMAC {
			if len(names) > 1 {
				shared++
				t.Errorf("MAC %s is held by %d Hardware: %v", mac, len(names), names)
			}
		}
		for ip, names := range byIP {
			if len(names) > 1 {
				shared++
				t.Errorf("IPv4 %s is held by %d Hardware: %v", ip, len(names), names)
			}
		}
		return byMAC, shared
	}
	byMAC, shared := holders()

	// Every MAC this test's Hardware holds is still claimed: another
	// Hardware with it (another spelling, the other namespace) gets 409.
	var macs []string
	for mac, names := range byMAC {
		if strings.Contains(names[0], "/mr-") {
			macs = append(macs, mac)
		}
	}
	slices.Sort(macs)
	var probeMu sync.Mutex
	unclaimed := 0
	err = framework.FanOut(ctx, len(macs), 16, func(i int) error {
		holder := byMAC[macs[i]][0]
		ns := datacenters[0]
		if strings.HasPrefix(holder, ns+"/") {
			ns = datacenters[1]
		}
		probe := hardware(fmt.Sprintf("mr-probe-%03d", i))
		probe.Spec.MAC = spell(macs[i], 2)
		_, err := sg.StargateV1alpha1().Hardwares(ns).Create(ctx, probe, metav1.CreateOptions{})
		switch {
		case err == nil:
			probeMu.Lock()
			unclaimed++
			probeMu.Unlock()
			t.Errorf("MAC %s, held by %s, was not claimed: a second Hardware %s/%s was created with it", macs[i], holder, ns, probe.Name)
			return sg.StargateV1alpha1().Hardwares(ns).Delete(ctx, probe.Name, metav1.DeleteOptions{})
		case apierrors.IsAlreadyExists(err) || apierrors.IsConflict(err):
			return nil
		default:
			return fmt.Errorf("probing MAC %s: %w", macs[i], err)
		}
	})
	if err != nil {
		t.Error(err)
	}
	if _, again := holders(); again > shared {
		t.Errorf("%d shared identities after the probes, %d before", again, shared)
	}
	record(t, row{Fault: "racing MAC claims via the aggregator: update A to M vs create B with M, deletes and re-creates", Runs: got.total,
		Duplicated: shared + unclaimed, S5xx: got.s5xx, Recovery: "-",
		Note: fmt.Sprintf("%d rounds, %d at a time, in %s; won by %s; median latency %s; answers %s; rounds with two winners %d (%s); MACs shared %d; "+
			"%d MACs held, %d found unclaimed by a probe create", rounds, workers, took.Round(100*time.Millisecond), counts(wins), got.medians(), got,
			len(twoWinners), counts(twoWinnersBy), shared, len(macs), unclaimed)})
}
