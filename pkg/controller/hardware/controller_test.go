package hardware

import (
	"context"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"

	"stargate.io/stargate/pkg/apis/stargate/v1alpha1"
	"stargate.io/stargate/pkg/datacenter"
	"stargate.io/stargate/pkg/datacenter/fake"
	clientfake "stargate.io/stargate/pkg/generated/clientset/versioned/fake"
	informers "stargate.io/stargate/pkg/generated/informers/externalversions"
)

func hw(name, mac string, mutate ...func(*v1alpha1.Hardware)) *v1alpha1.Hardware {
	h := &v1alpha1.Hardware{ObjectMeta: metav1.ObjectMeta{Namespace: "dc-west", Name: name}, Spec: v1alpha1.HardwareSpec{MAC: mac}}
	for _, m := range mutate {
		m(h)
	}
	return h
}

func TestLookupByMAC(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	client := clientfake.NewClientset(
		&v1alpha1.Datacenter{ObjectMeta: metav1.ObjectMeta{Name: "dc-west"}, Spec: v1alpha1.DatacenterSpec{Endpoint: "https://dc-west.example"}},
		hw("known", "aa:bb:cc:dd:ee:01"), hw("stranger", "aa:bb:cc:dd:ee:02"),
		hw("busy", "aa:bb:cc:dd:ee:03", func(h *v1alpha1.Hardware) {
			h.Status.ActiveJob, h.Status.State = "repave-1", v1alpha1.HardwareStateProvisioning
		}),
		&v1alpha1.Hardware{ObjectMeta: metav1.ObjectMeta{Namespace: "dc-nowhere", Name: "lost"}, Spec: v1alpha1.HardwareSpec{MAC: "aa:bb:cc:dd:ee:04"}})
	dc := fake.New()
	dc.AddMachine(datacenter.MachineState{MAC: "aa:bb:cc:dd:ee:01", State: "ready", CurrentOS: "1.0.0", PowerState: datacenter.PowerOn})
	dc.AddMachine(datacenter.MachineState{MAC: "aa:bb:cc:dd:ee:03", State: "off", CurrentOS: "1.0.0"})
	factory := informers.NewSharedInformerFactory(client, 0)
	v1 := factory.Stargate().V1alpha1()
	c, err := New(client, v1.Hardwares(), v1.Datacenters(), func(*v1alpha1.Datacenter) (datacenter.Client, error) { return dc, nil }, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	factory.Start(ctx.Done())
	factory.WaitForCacheSync(ctx.Done())

	want := map[string]struct {
		state v1alpha1.HardwareState
		os    string
	}{
		"dc-west/known":    {v1alpha1.HardwareStateReady, "1.0.0"},
		"dc-west/stranger": {v1alpha1.HardwareStateUnknown, ""},
		"dc-west/busy":     {v1alpha1.HardwareStateProvisioning, ""}, // the Job controller owns it
		"dc-nowhere/lost":  {"", ""},                                 // no Datacenter to ask
	}
	for key, w := range want {
		after, err := c.sync(ctx, key)
		if err != nil || after != time.Minute {
			t.Errorf("%s: requeue %s, %v", key, after, err)
		}
		ns, name, _ := cache.SplitMetaNamespaceKey(key)
		got, _ := client.StargateV1alpha1().Hardwares(ns).Get(ctx, name, metav1.GetOptions{})
		if got.Status.State != w.state || got.Status.CurrentOS != w.os {
			t.Errorf("%s: state %q os %q, want %q %q", key, got.Status.State, got.Status.CurrentOS, w.state, w.os)
		}
	}
	if n := dc.Calls(fake.MethodMachine); n != 2 {
		t.Errorf("%d lookups, want 2 (not the busy one, not the one without a Datacenter)", n)
	}
}
