package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	kjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/utils/ptr"

	"stargate.io/stargate/pkg/apis/stargate/install"
	"stargate.io/stargate/pkg/apis/stargate/v1alpha1"
	"stargate.io/stargate/pkg/cmd/server"
	"stargate.io/stargate/pkg/registry/stargate/hwindex"
	"stargate.io/stargate/test/framework"
)

// A fleet is what a section seeds: Hardware spread evenly over
// datacenters (one namespace each, named prefix and a number), every tenth
// with a Job; the last unfinished Jobs hold their Hardware, the others
// finished. The i-th Hardware's MAC and IPv4 come from offset+i, so fleets
// with offsets far apart never share a MAC (unique across namespaces).
type fleet struct {
	prefix                                  string
	offset                                  int
	datacenters, hardware, jobs, unfinished int
}

// fleet is the scale section's fleet of these sizes: a tenth of its Jobs unfinished.
func (sz sizes) fleet() fleet {
	return fleet{prefix: "scale-dc-", datacenters: sz.scaleDatacenters, hardware: sz.scaleHardware, jobs: sz.scaleJobs, unfinished: sz.scaleJobs / 10}
}

func (f fleet) datacenter(d int) string { return fmt.Sprintf("%s%03d", f.prefix, d) }

// perDatacenter is how many Hardware each datacenter has.
func (f fleet) perDatacenter() int { return f.hardware / f.datacenters }

// hardwareAt is the datacenter and name of the i-th Hardware.
func (f fleet) hardwareAt(i int) (string, string) {
	return f.datacenter(i % f.datacenters), fmt.Sprintf("node-%07d", i)
}

// jobOf is the Job of the i-th Hardware, if it has one: every tenth
// Hardware of each datacenter, the first jobs-unfinished of them finished.
func (f fleet) jobOf(i int) (name string, finished, ok bool) {
	row := i / f.datacenters // i's place in its datacenter
	if row%10 != 0 {
		return "", false, false
	}
	j := (row/10)*f.datacenters + i%f.datacenters
	if j >= f.jobs {
		return "", false, false
	}
	return fmt.Sprintf("reboot-%07d", i), j < f.jobs-f.unfinished, true
}

// seeder writes objects into etcd exactly as stargate-apiserver stores them:
// its storage codec (the scheme's JSON serializer, the v1alpha1 storage
// version), its keys under its --etcd-prefix, and its identity-index entries
// (hwindex.Entries). It learns the key layout and checks the byte-exactness
// on objects the server itself created (learnStorage).
type seeder struct {
	etcd       *clientv3.Client
	serializer runtime.Serializer
	hwKey      func(ns, name string) string
	jobKey     func(ns, name string) string
	hwTemplate *v1alpha1.Hardware
	jobTmpl    *v1alpha1.Job
	claimedAt  time.Time
}

// newSeeder makes the fleet's Datacenters and learns how the server stores
// a Hardware and a Job in the fleet's first datacenter.
func (b *bench) newSeeder(ctx context.Context, f fleet) (*seeder, error) {
	if err := b.fleetDatacenters(ctx, f); err != nil {
		return nil, err
	}
	return b.learnStorage(ctx, f.datacenter(0), true)
}

// learnStorage creates one Hardware named template (and, withJob, one Job)
// through the API in namespace ns, reads back what the server stored in
// etcd, and checks that re-encoding them gives the very same bytes. Without
// a Job, the seeder seeds no Jobs (a fleet with jobs 0).
func (b *bench) learnStorage(ctx context.Context, ns string, withJob bool) (*seeder, error) {
	scheme := runtime.NewScheme()
	install.Install(scheme)
	s := &seeder{etcd: b.etcd, serializer: kjson.NewSerializerWithOptions(kjson.DefaultMetaFactory, scheme, scheme, kjson.SerializerOptions{})}
	hw := realisticHardware(ns, "template", 0)
	hw.Spec.MAC, hw.Spec.IPv4 = "0a:ff:ff:ff:ff:ff", "10.255.255.254" // outside the fleet's ranges
	created, err := b.sg.StargateV1alpha1().Hardwares(ns).Create(ctx, hw, metav1.CreateOptions{FieldManager: "stargate-bench"})
	if err != nil {
		return nil, err
	}
	if withJob {
		_, err = b.sg.StargateV1alpha1().Jobs(ns).Create(ctx, &v1alpha1.Job{
			ObjectMeta: metav1.ObjectMeta{Name: "template", Labels: map[string]string{"stargate.io/campaign": "os-2-rollout"}},
			Spec:       v1alpha1.JobSpec{HardwareRef: v1alpha1.LocalObjectReference{Name: "template"}, Operation: v1alpha1.OperationReboot},
		}, metav1.CreateOptions{FieldManager: "stargate-bench"})
		if err != nil {
			return nil, err
		}
	}
	prefix := server.DefaultEtcdPathPrefix + "/"
	keys, err := b.etcd.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return nil, err
	}
	var hwKey, jobKey string
	for _, kv := range keys.Kvs {
		k := string(kv.Key)
		switch {
		case strings.HasSuffix(k, "/hardwares/"+ns+"/template"):
			hwKey = k
		case strings.HasSuffix(k, "/jobs/"+ns+"/template"):
			jobKey = k
		}
	}
	if hwKey == "" || withJob && jobKey == "" {
		return nil, fmt.Errorf("the server's keys for %s/template are not under %s", ns, prefix)
	}
	hwBase, jobBase := strings.TrimSuffix(hwKey, ns+"/template"), strings.TrimSuffix(jobKey, ns+"/template")
	s.hwKey = func(ns, name string) string { return hwBase + ns + "/" + name }
	s.jobKey = func(ns, name string) string { return jobBase + ns + "/" + name }

	// The Job controller may write the template Job meanwhile: read both
	// once it has, so the copies match what is stored.
	time.Sleep(2 * time.Second)
	var storedHW v1alpha1.Hardware
	if err := s.readBack(ctx, hwKey, &storedHW); err != nil {
		return nil, err
	}
	s.hwTemplate = &storedHW
	if withJob {
		var storedJob v1alpha1.Job
		if err := s.readBack(ctx, jobKey, &storedJob); err != nil {
			return nil, err
		}
		s.jobTmpl = &storedJob
	}

	// Its identity-index entries are what hwindex.Entries says.
	entries := hwindex.Entries(server.DefaultEtcdPathPrefix, ns, "template", created.UID, created.Spec.MAC, created.Spec.IPv4, time.Time{})
	for key := range entries {
		got, err := b.etcd.Get(ctx, key)
		if err != nil {
			return nil, err
		}
		if len(got.Kvs) != 1 {
			return nil, fmt.Errorf("the server stored no index entry %s", key)
		}
		var e struct{ ClaimedAt time.Time }
		if err := json.Unmarshal(got.Kvs[0].Value, &e); err != nil {
			return nil, err
		}
		s.claimedAt = e.ClaimedAt
		want := hwindex.Entries(server.DefaultEtcdPathPrefix, ns, "template", created.UID, created.Spec.MAC, created.Spec.IPv4, e.ClaimedAt)[key]
		if want != string(got.Kvs[0].Value) {
			return nil, fmt.Errorf("index entry %s: the server stored %s, the seeder would write %s", key, got.Kvs[0].Value, want)
		}
	}
	return s, nil
}

// readBack decodes the value at key into into and checks that encoding it
// again gives the stored bytes.
func (s *seeder) readBack(ctx context.Context, key string, into runtime.Object) error {
	got, err := s.etcd.Get(ctx, key)
	if err != nil {
		return err
	}
	if len(got.Kvs) != 1 {
		return fmt.Errorf("nothing stored at %s", key)
	}
	raw := got.Kvs[0].Value
	if _, _, err := s.serializer.Decode(raw, nil, into); err != nil {
		return err
	}
	var again bytes.Buffer
	if err := s.serializer.Encode(into, &again); err != nil {
		return err
	}
	if !bytes.Equal(again.Bytes(), raw) {
		return fmt.Errorf("re-encoding %s does not give the stored bytes:\nstored %s\nagain  %s", key, raw, again.Bytes())
	}
	return nil
}

func (s *seeder) encode(obj runtime.Object) ([]byte, error) {
	var buf bytes.Buffer
	err := s.serializer.Encode(obj, &buf)
	return buf.Bytes(), err
}

// realisticHardware is a Hardware as an inventory system would fill it:
// topology and ownership labels, asset annotations, about 1.35 KB stored
// (with the managed fields of its create and its status).
func realisticHardware(ns, name string, i int) *v1alpha1.Hardware {
	rack := fmt.Sprintf("rack-%03d", (i/40)%250)
	return &v1alpha1.Hardware{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns,
			Labels: map[string]string{
				"topology.stargate.io/region": "us-west-2", "topology.stargate.io/zone": "us-west-2b",
				"topology.stargate.io/rack": rack, "stargate.io/sku": "gpu-8xh100", "stargate.io/pool": "training-a",
				"stargate.io/role": "compute", "stargate.io/owner": "ml-platform",
			},
			Annotations: map[string]string{
				"stargate.io/serial":    fmt.Sprintf("SN-7Z%09d", i),
				"stargate.io/asset-tag": fmt.Sprintf("AT-%08d", i),
			},
		},
		Spec: v1alpha1.HardwareSpec{
			MAC:       fmt.Sprintf("0a:%02x:%02x:%02x:%02x:%02x", byte(i>>32), byte(i>>24), byte(i>>16), byte(i>>8), byte(i)),
			IPv4:      fmt.Sprintf("10.%d.%d.%d", (i/62500)%250+1, (i/250)%250, i%250+1),
			Inventory: v1alpha1.HardwareInventory{SKU: "GPU-8xH100", Location: fmt.Sprintf("us-west-2b/hall-3/%s/u%02d", rack, i%40+1)},
			BMC:       &v1alpha1.BMC{Address: fmt.Sprintf("bmc-%07d.oob.us-west-2b.example:623", i)},
		},
	}
}

// seedFleet writes the fleet straight into etcd, many keys per
// transaction: Hardware with their index entries, and Jobs. (newSeeder made
// the Datacenters.)
func (b *bench) seedFleet(ctx context.Context, s *seeder, f fleet) (time.Duration, error) {
	start := time.Now()
	const perTxn = 40 // 3 keys each (object, MAC, IPv4): under etcd's 128 operations
	batches := (f.hardware + perTxn - 1) / perTxn
	err := framework.FanOut(ctx, batches, 4, func(batch int) error {
		var ops []clientv3.Op
		for i := batch * perTxn; i < min(f.hardware, (batch+1)*perTxn); i++ {
			hwOps, jobOps, err := s.objects(f, i)
			if err != nil {
				return err
			}
			ops = append(append(ops, hwOps...), jobOps...)
		}
		for len(ops) > 0 { // the Jobs may push a batch past 128
			n := min(len(ops), 120)
			if _, err := b.etcd.Txn(ctx).Then(ops[:n]...).Commit(); err != nil {
				return err
			}
			ops = ops[n:]
		}
		return nil
	})
	return time.Since(start), err
}

// fleetDatacenters makes the fleet's Datacenters, paused (the unfinished
// Jobs wait rather than run) and with credentials.
func (b *bench) fleetDatacenters(ctx context.Context, f fleet) error {
	token, err := os.ReadFile(filepath.Join(b.c.CredsDir, "dc-west"))
	if err != nil {
		return err
	}
	for d := range f.datacenters {
		dc := f.datacenter(d)
		if err := b.ensureNamespace(ctx, dc); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(b.c.CredsDir, dc), token, 0o600); err != nil {
			return err
		}
		_, err = b.sg.StargateV1alpha1().Datacenters().Create(ctx, &v1alpha1.Datacenter{ObjectMeta: metav1.ObjectMeta{Name: dc},
			Spec: v1alpha1.DatacenterSpec{Endpoint: b.c.MockDC["dc-west"], Paused: true, MaxConcurrentJobs: ptr.To[int32](1000)}}, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return err
		}
	}
	return nil
}

// objects are the etcd writes of the i-th Hardware and its Job.
func (s *seeder) objects(f fleet, i int) (hwOps, jobOps []clientv3.Op, err error) {
	ns, name := f.hardwareAt(i)
	hw := realisticHardware(ns, name, f.offset+i)
	hw.TypeMeta = s.hwTemplate.TypeMeta
	hw.UID = uuid.NewUUID()
	hw.Generation, hw.CreationTimestamp, hw.ManagedFields = 1, s.hwTemplate.CreationTimestamp, s.hwTemplate.ManagedFields
	hw.Status = v1alpha1.HardwareStatus{State: v1alpha1.HardwareStateReady, CurrentOS: "1.0.0", ObservedGeneration: 1}
	if jobName, finished, ok := f.jobOf(i); ok {
		job := s.jobTmpl.DeepCopy()
		job.Name, job.Namespace, job.UID, job.ResourceVersion = jobName, ns, uuid.NewUUID(), ""
		job.Spec.HardwareRef.Name = name
		job.Finalizers = nil
		took := metav1.NewTime(s.claimedAt.Add(-time.Hour))
		if finished {
			done := metav1.NewTime(took.Add(90 * time.Second))
			job.Status = v1alpha1.JobStatus{Phase: v1alpha1.JobSucceeded, DCJobID: fmt.Sprintf("dcjob-%07d", i), Reason: "Completed",
				Message: "reboot " + name + " completed", StartTime: &took, CompletionTime: &done, Attempts: 1, LastAttemptTime: &took,
				CurrentOS: "1.0.0", Submission: &v1alpha1.JobSubmission{MAC: hw.Spec.MAC, IPv4: hw.Spec.IPv4},
				Conditions: []metav1.Condition{
					{Type: "Progressing", Status: metav1.ConditionFalse, Reason: "Completed", Message: "reboot " + name + " completed", LastTransitionTime: done},
					{Type: "Complete", Status: metav1.ConditionTrue, Reason: "Completed", Message: "reboot " + name + " completed", LastTransitionTime: done},
				}}
			hw.Status.LastJob = jobName
			hw.Status.LastJobResult = &v1alpha1.JobResult{Name: jobName, Operation: v1alpha1.OperationReboot, Phase: v1alpha1.JobSucceeded,
				Reason: "Completed", CompletionTime: &done}
			hw.Status.Conditions = []metav1.Condition{{Type: v1alpha1.HardwareConditionReserved, Status: metav1.ConditionFalse,
				Reason: "Released", Message: "Job " + jobName + " released this Hardware", LastTransitionTime: done}}
		} else {
			hw.Status.ActiveJob = jobName
			hw.Status.Conditions = []metav1.Condition{{Type: v1alpha1.HardwareConditionReserved, Status: metav1.ConditionTrue,
				Reason: "JobActive", Message: fmt.Sprintf("Job %s holds this Hardware until it finishes", jobName), LastTransitionTime: took}}
		}
		raw, err := s.encode(job)
		if err != nil {
			return nil, nil, err
		}
		jobOps = append(jobOps, clientv3.OpPut(s.jobKey(ns, jobName), string(raw)))
	}
	raw, err := s.encode(hw)
	if err != nil {
		return nil, nil, err
	}
	hwOps = append(hwOps, clientv3.OpPut(s.hwKey(ns, name), string(raw)))
	for k, v := range hwindex.Entries(server.DefaultEtcdPathPrefix, ns, name, hw.UID, hw.Spec.MAC, hw.Spec.IPv4, s.claimedAt) {
		hwOps = append(hwOps, clientv3.OpPut(k, v))
	}
	return hwOps, jobOps, nil
}

// checkSeeded reads a sample of the seeded Hardware and Jobs through the API
// and compares them with what was seeded, and tries the index: a create
// with a seeded MAC must be refused.
func (b *bench) checkSeeded(ctx context.Context, s *seeder, f fleet, samples int) error {
	rng := rand.New(rand.NewPCG(1, 2))
	for range samples {
		i := rng.IntN(f.hardware)
		ns, name := f.hardwareAt(i)
		got, err := b.sg.StargateV1alpha1().Hardwares(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("reading seeded Hardware %s/%s: %w", ns, name, err)
		}
		var stored v1alpha1.Hardware
		if err := s.readBack(ctx, s.hwKey(ns, name), &stored); err != nil {
			return err
		}
		got.ResourceVersion, stored.ResourceVersion = "", ""
		got.TypeMeta, stored.TypeMeta = metav1.TypeMeta{}, metav1.TypeMeta{}
		if !apiequality.Semantic.DeepEqual(got, &stored) {
			return fmt.Errorf("Hardware %s/%s through the API differs from what was seeded", ns, name)
		}
		if jobName, _, ok := f.jobOf(i); ok {
			if _, err := b.sg.StargateV1alpha1().Jobs(ns).Get(ctx, jobName, metav1.GetOptions{}); err != nil {
				return fmt.Errorf("reading seeded Job %s/%s: %w", ns, jobName, err)
			}
		}
	}
	ns, name := f.hardwareAt(f.hardware / 2)
	seeded, err := b.sg.StargateV1alpha1().Hardwares(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	dup := realisticHardware(ns, "duplicate-of-"+name, 0)
	dup.Spec.MAC, dup.Spec.IPv4 = seeded.Spec.MAC, "10.254.254.254"
	if _, err := b.sg.StargateV1alpha1().Hardwares(ns).Create(ctx, dup, metav1.CreateOptions{}); !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("a create with the MAC of seeded %s/%s answered %v, want 409 AlreadyExists", ns, name, err)
	}
	return nil
}
