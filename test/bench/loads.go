package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"stargate.io/stargate/test/framework"
)

// etcdCeiling measures puts/s of 1 KiB values straight to the etcd every
// server here uses, at each client concurrency of the create runs.
func (b *bench) etcdCeiling(ctx context.Context) error {
	value := strings.Repeat("v", 1024)
	ceilings := map[int]sample{}
	for rep := range b.sz.reps {
		for _, conc := range b.sz.concurrencies {
			n := b.sz.creates
			start := time.Now()
			if err := framework.FanOut(ctx, n, conc, func(i int) error {
				_, err := b.etcd.Put(ctx, fmt.Sprintf("/bench/ceiling/%d/%d/%d", rep, conc, i), value)
				return err
			}); err != nil {
				return err
			}
			ceilings[conc] = append(ceilings[conc], float64(n)/time.Since(start).Seconds())
		}
	}
	if _, err := b.etcd.Delete(ctx, "/bench/ceiling/", clientv3.WithPrefix()); err != nil {
		return err
	}
	b.ceiling = ceilings
	for _, conc := range b.sz.concurrencies {
		b.add(row{section: "1. etcd ceiling (clientv3 puts of 1 KiB, same etcd)", name: fmt.Sprintf("puts/s at concurrency %d", conc), value: ceilings[conc], unit: "/s"})
	}
	return nil
}

// creates measures Hardware creates per second through each path, for each
// size and concurrency, interleaving the repetitions (the paths in a
// different order each time), and the CPU per 1,000 creates of every server
// process at the highest concurrency.
func (b *bench) creates(ctx context.Context) error {
	type key struct {
		path, size, conc int
	}
	rates := map[key]sample{}
	cpuPer := map[int][]cpu{}
	sizes := []int{1024, 20 * 1024}
	top := b.sz.concurrencies[len(b.sz.concurrencies)-1]
	orders := map[[2]int][][]int{} // by size and concurrency
	for si, size := range sizes {
		for _, conc := range b.sz.concurrencies {
			orders[[2]int{si, conc}] = b.pathOrders(b.sz.reps)
			fmt.Printf("   path order by repetition, %d KiB, concurrency %d: %s\n", size/1024, conc, b.orderNames(orders[[2]int{si, conc}]))
		}
	}
	for rep := range b.sz.reps {
		for si, size := range sizes {
			for _, conc := range b.sz.concurrencies {
				for _, pi := range orders[[2]int{si, conc}][rep] {
					p := b.paths[pi]
					ns := fmt.Sprintf("bench-create-%s-%d-%d-%d", p.key, si, conc, rep)
					if err := b.ensureNamespace(ctx, ns); err != nil {
						return err
					}
					before := b.cpuNow()
					rate, err := b.createMany(ctx, p, ns, b.sz.creates, conc, size)
					if err != nil {
						return err
					}
					used := b.cpuNow().since(before)
					rates[key{pi, si, conc}] = append(rates[key{pi, si, conc}], rate)
					if si == 0 && conc == top {
						per := 1000 / float64(b.sz.creates)
						cpuPer[pi] = append(cpuPer[pi], cpu{used.stargate * per, used.kube * per, used.etcd * per})
					}
				}
			}
		}
	}
	for si, size := range sizes {
		for _, conc := range b.sz.concurrencies {
			crd := rates[key{2, si, conc}].median()
			for pi, p := range b.paths {
				r := row{section: "2. Create throughput (Hardware, JSON, client QPS unlimited)",
					name:  fmt.Sprintf("%s, %d KiB, concurrency %d", p.name, size/1024, conc),
					value: rates[key{pi, si, conc}], unit: "/s"}
				if pi != 2 {
					r.ratio, r.versus = rates[key{pi, si, conc}].median()/crd, "CRD"
				}
				if ceiling := b.ceiling[conc].median(); ceiling > 0 {
					r.fraction = fmt.Sprintf("%.0f%% of etcd", 100*rates[key{pi, si, conc}].median()/ceiling)
				}
				if si == 0 && conc == top && pi == 0 {
					r.target, r.pass = "direct >= 1.5x CRD", passIf(r.ratio >= 1.5)
				}
				if si == 0 && conc == top && pi == 1 {
					r.target, r.pass = "aggregated >= 1.0x CRD", passIf(r.ratio >= 1.0)
				}
				b.add(r)
			}
		}
	}
	// CPU per 1,000 creates (1 KiB, top concurrency) of every process a
	// create touches, and their total per path. Direct: Stargate, plus
	// kube-apiserver answering its SubjectAccessReviews, and etcd; aggregated:
	// kube-apiserver proxying, Stargate and etcd; CRD: kube-apiserver and etcd.
	// The processes' background work in the interval is counted too.
	section := fmt.Sprintf("3. Server CPU per 1,000 creates (1 KiB, concurrency %d; CPU-seconds from /proc, every server process)", top)
	totals := map[int]sample{}
	for pi := range b.paths {
		for _, c := range cpuPer[pi] {
			totals[pi] = append(totals[pi], c.total())
		}
	}
	var kubeCRD sample
	for _, c := range cpuPer[2] {
		kubeCRD = append(kubeCRD, c.kube)
	}
	for pi, p := range b.paths {
		var sg, kube, etcd sample
		for _, c := range cpuPer[pi] {
			sg, kube, etcd = append(sg, c.stargate), append(kube, c.kube), append(etcd, c.etcd)
		}
		if pi != 2 {
			r := row{section: section, name: p.name + ": stargate-apiserver", value: sg, unit: "s"}
			if pi == 0 {
				r.ratio, r.versus = sg.median()/kubeCRD.median(), "kube-apiserver on the CRD path"
			}
			b.add(r)
		}
		b.add(row{section: section, name: p.name + ": kube-apiserver", value: kube, unit: "s"})
		b.add(row{section: section, name: p.name + ": etcd", value: etcd, unit: "s"})
		names := "stargate-apiserver + kube-apiserver + etcd"
		if pi == 2 {
			names = "kube-apiserver + etcd"
		}
		r := row{section: section, name: fmt.Sprintf("%s: total (%s)", p.name, names), value: totals[pi], unit: "s"}
		if pi != 2 {
			r.ratio, r.versus = totals[pi].median()/totals[2].median(), "the CRD path's total"
		}
		if pi == 0 {
			r.target, r.pass = "<= 0.5x CRD total", passIf(r.ratio <= 0.5)
		}
		b.add(r)
	}
	return nil
}

// listAndWatch fills one namespace per kind with listObjects Hardware, then
// times a full list, a list paginated by 500 and a field-selected list, and
// the latency from sending a create to its watch event, for each path, the
// paths in a different order in every repetition.
func (b *bench) listAndWatch(ctx context.Context) error {
	for _, pi := range []int{0, 2} { // a and b share Stargate's objects
		ns := "bench-list-" + b.paths[pi].key
		if err := b.ensureNamespace(ctx, ns); err != nil {
			return err
		}
		if _, err := b.createMany(ctx, b.paths[pi], ns, b.sz.listObjects, 32, 1024); err != nil {
			return err
		}
	}
	full, paged, selected := map[int]sample{}, map[int]sample{}, map[int]sample{}
	orders := b.pathOrders(b.sz.reps)
	fmt.Printf("   path order by repetition, lists: %s\n", b.orderNames(orders))
	for rep := range b.sz.reps {
		for _, pi := range orders[rep] {
			p := b.paths[pi]
			ns := "bench-list-a"
			if pi == 2 {
				ns = "bench-list-c"
			}
			res := p.client.Resource(p.gvr).Namespace(ns)
			start := time.Now()
			list, err := res.List(ctx, metav1.ListOptions{})
			if err != nil {
				return err
			}
			if len(list.Items) != b.sz.listObjects {
				return fmt.Errorf("%s listed %d objects, want %d", p.name, len(list.Items), b.sz.listObjects)
			}
			full[pi] = append(full[pi], ms(time.Since(start)))
			mac := list.Items[len(list.Items)/2].Object["spec"].(map[string]interface{})["mac"].(string)

			start = time.Now()
			count, cont := 0, ""
			for {
				page, err := res.List(ctx, metav1.ListOptions{Limit: 500, Continue: cont})
				if err != nil {
					return err
				}
				count += len(page.Items)
				if cont = page.GetContinue(); cont == "" {
					break
				}
			}
			paged[pi] = append(paged[pi], ms(time.Since(start)))
			if count != b.sz.listObjects {
				return fmt.Errorf("%s paginated %d objects", p.name, count)
			}

			start = time.Now()
			one, err := res.List(ctx, metav1.ListOptions{FieldSelector: "spec.mac=" + mac})
			if err != nil {
				return err
			}
			selected[pi] = append(selected[pi], ms(time.Since(start)))
			if len(one.Items) != 1 {
				return fmt.Errorf("%s field selector found %d", p.name, len(one.Items))
			}
		}
	}
	section := fmt.Sprintf("4. List of %d Hardware (1 KiB each) and watch latency", b.sz.listObjects)
	for pi, p := range b.paths {
		r := row{section: section, name: p.name + ": full list", value: full[pi], unit: "ms"}
		if pi != 2 {
			r.ratio, r.versus = full[pi].median()/full[2].median(), "CRD"
		}
		if pi == 0 {
			r.target, r.pass = "<= 0.5x CRD", passIf(r.ratio <= 0.5)
		}
		b.add(r)
		b.add(row{section: section, name: p.name + ": paginated by 500", value: paged[pi], unit: "ms"})
		b.add(row{section: section, name: p.name + ": field selector spec.mac", value: selected[pi], unit: "ms"})
	}
	for _, watchers := range []int{1, 150} {
		// Every latency of every repetition, per path, and each repetition's percentiles.
		pooled := map[int][]time.Duration{}
		p50, p99 := map[int]sample{}, map[int]sample{}
		orders := b.pathOrders(b.sz.reps)
		fmt.Printf("   path order by repetition, watches with %d watchers: %s\n", watchers, b.orderNames(orders))
		for rep := range b.sz.reps {
			for _, pi := range orders[rep] {
				p := b.paths[pi]
				ns := fmt.Sprintf("bench-watch-%s-%d-%d", p.key, watchers, rep)
				if err := b.ensureNamespace(ctx, ns); err != nil {
					return err
				}
				lat, err := b.watchLatency(ctx, p, ns, watchers, b.sz.watchEvents)
				if err != nil {
					return err
				}
				pooled[pi] = append(pooled[pi], lat...)
				p50[pi] = append(p50[pi], ms(percentile(lat, 50)))
				p99[pi] = append(p99[pi], ms(percentile(lat, 99)))
			}
		}
		for pi, p := range b.paths {
			all50, all99 := ms(percentile(pooled[pi], 50)), ms(percentile(pooled[pi], 99))
			b.add(row{section: section, name: fmt.Sprintf("%s: watch latency p50 (create sent to event), %d watchers", p.name, watchers),
				value: p50[pi], pooled: &all50, unit: "ms"})
			b.add(row{section: section, name: fmt.Sprintf("%s: watch latency p99 (create sent to event), %d watchers", p.name, watchers),
				value: p99[pi], pooled: &all99, unit: "ms"})
		}
	}
	return nil
}

// watchLatency opens watchers watches on ns, creates events Hardware one by
// one, and returns, for every watcher and object, the time from sending the
// create request to the event's arrival: never negative, as the event cannot
// come before the request, and it includes the create's own round trip.
func (b *bench) watchLatency(ctx context.Context, p path, ns string, watchers, events int) ([]time.Duration, error) {
	res := p.client.Resource(p.gvr).Namespace(ns)
	var sent sync.Map // name -> time the create was sent
	var mu sync.Mutex
	var lat []time.Duration
	var wg sync.WaitGroup
	var missing atomic.Int64
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for range watchers {
		w, err := res.Watch(wctx, metav1.ListOptions{})
		if err != nil {
			return nil, err
		}
		wg.Go(func() {
			defer w.Stop()
			var got []time.Duration
			for ev := range w.ResultChan() {
				at := time.Now()
				if ev.Type != watch.Added {
					continue
				}
				name := ev.Object.(metav1.Object).GetName()
				t, ok := sent.Load(name) // stored before the create was sent
				if !ok {
					missing.Add(1)
					continue
				}
				got = append(got, at.Sub(t.(time.Time)))
				if len(got) == events {
					break
				}
			}
			mu.Lock()
			lat = append(lat, got...)
			mu.Unlock()
		})
	}
	for i := range events {
		obj := b.hardware(p.apiVersion, fmt.Sprintf("w-%04d", i), 1024)
		sent.Store(obj.GetName(), time.Now())
		if _, err := res.Create(ctx, obj, metav1.CreateOptions{}); err != nil {
			return nil, err
		}
	}
	wg.Wait()
	if n := missing.Load(); n > 0 {
		return nil, fmt.Errorf("%s: %d watch events for objects this run did not create", p.name, n)
	}
	if len(lat) != watchers*events {
		return nil, fmt.Errorf("%s: %d of %d watch events arrived", p.name, len(lat), watchers*events)
	}
	return lat, nil
}
