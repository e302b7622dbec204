package hardware

import (
	"context"
	"time"

	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"stargate.io/stargate/pkg/apis/stargate/v1alpha1"
	"stargate.io/stargate/pkg/datacenter"
)

// lookUpPage looks up the idle Hardware of one page of a sweep. When the
// datacenter offers the batch lookup (datacenter.Batch), their machines are
// looked up together (one request per 500 MACs) and each result recorded as
// sync records it: only what changed, conditional on the resourceVersion the
// page was read at. It returns the Hardware left for the queue, each to be
// synced on its own: those held longer than staleLockAge (their lock is
// checked), and, when the datacenter offers no batch lookup or it fails,
// every idle one (a GetMachine each, as without it). Hardware a Job holds
// is not looked up: the Job owns its status meanwhile.
func (c *Controller) lookUpPage(ctx context.Context, datacenterName string, page []v1alpha1.Hardware, now time.Time) []*v1alpha1.Hardware {
	var idle, queued []*v1alpha1.Hardware
	for i := range page {
		switch hw := &page[i]; {
		case hw.Status.ActiveJob == "":
			idle = append(idle, hw)
		case lockedSince(hw, now) > staleLockAge:
			queued = append(queued, hw)
		}
	}
	if len(idle) == 0 {
		return queued
	}
	found, err := c.lookUpMachines(ctx, datacenterName, idle)
	if err != nil {
		if !datacenter.IsUnsupported(err) && ctx.Err() == nil {
			klog.FromContext(ctx).Error(err, "Batch machine lookup failed; looking the page's Hardware up one by one", "datacenter", datacenterName)
		}
		return append(queued, idle...)
	}
	for i, hw := range idle {
		after, err := c.record(ctx, hw, found[hw.Spec.MAC])
		switch {
		case err != nil:
			// The API or the lead failed: the queue retries, with backoff,
			// this Hardware and the rest of the page.
			if ctx.Err() == nil {
				klog.FromContext(ctx).Error(err, "Recording a batch lookup failed; looking the rest of the page up one by one",
					"hardware", klog.KObj(hw))
			}
			return append(queued, idle[i:]...)
		case after > 0: // changed during the lookup: looked up again, on its own
			if key, err := cache.MetaNamespaceKeyFunc(hw); err == nil {
				c.queue.AddAfter(key, after)
			}
		}
	}
	return queued
}

// lookUpMachines looks up the machines of hws at their datacenter in one
// batch; an error for which datacenter.IsUnsupported is true when it offers
// no batch lookup (or there is no Datacenter to ask).
func (c *Controller) lookUpMachines(ctx context.Context, datacenterName string, hws []*v1alpha1.Hardware) (map[string]*datacenter.MachineState, error) {
	dc, err := c.dcs.Get(datacenterName)
	if err != nil {
		return nil, datacenter.UnsupportedError("machine lookup", "no Datacenter "+datacenterName)
	}
	client, err := c.clientFor(dc)
	if err != nil {
		return nil, err
	}
	batch, ok := client.(datacenter.Batch)
	if !ok {
		return nil, datacenter.UnsupportedError("machine lookup", "the datacenter client has no batch calls")
	}
	macs := make([]string, 0, len(hws))
	for _, hw := range hws {
		macs = append(macs, hw.Spec.MAC)
	}
	return batch.LookupMachines(ctx, macs)
}
