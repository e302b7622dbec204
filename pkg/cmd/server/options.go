// Package server holds the options and the run loop of stargate-apiserver.
package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/apiserver/pkg/endpoints/openapi"
	genericapiserver "k8s.io/apiserver/pkg/server"
	genericoptions "k8s.io/apiserver/pkg/server/options"
	"k8s.io/apiserver/pkg/util/compatibility"
	cliflag "k8s.io/component-base/cli/flag"
	"k8s.io/klog/v2"
	netutils "k8s.io/utils/net"

	"stargate.io/stargate/pkg/apis/stargate/v1alpha1"
	"stargate.io/stargate/pkg/apiserver"
	"stargate.io/stargate/pkg/controller/jobs"
	"stargate.io/stargate/pkg/controller/manager"
	"stargate.io/stargate/pkg/embeddedetcd"
	stargateopenapi "stargate.io/stargate/pkg/generated/openapi"
)

// DefaultEtcdPathPrefix is where Stargate keeps its objects in etcd.
const DefaultEtcdPathPrefix = "/registry/stargate.io"

// Options are the flags of stargate-apiserver.
type Options struct {
	RecommendedOptions *genericoptions.RecommendedOptions

	// Standalone serves without a hosting kube-apiserver: client-certificate
	// authentication against a local CA and system:masters-only authorization.
	Standalone bool
	// DataDir holds the embedded etcd, the standalone PKI and kubeconfig.
	DataDir string
	// DatacenterCredentialsDir holds one bearer-token file per Datacenter name.
	DatacenterCredentialsDir string
	// Controllers runs the controller loop in this process.
	Controllers bool
	// LeaderElect elects, among replicas sharing an etcd, the one that runs
	// the controllers; LeaderElectionTTL is how long a silent leader keeps it.
	LeaderElect       bool
	LeaderElectionTTL time.Duration
	// JobOptions, ProbeInterval and HardwareRecheck tune the controllers;
	// tests shorten them. Zero values are the defaults.
	JobOptions                     jobs.Options
	ProbeInterval, HardwareRecheck time.Duration

	// embeddedEtcd is set by Run when --etcd-servers is empty.
	embeddedEtcd bool

	Stdout io.Writer
	Stderr io.Writer
}

// NewOptions returns the defaults: aggregated mode, embedded etcd in .stargate/.
func NewOptions(out, errOut io.Writer) *Options {
	o := &Options{
		RecommendedOptions: genericoptions.NewRecommendedOptions(DefaultEtcdPathPrefix,
			apiserver.Codecs.LegacyCodec(v1alpha1.SchemeGroupVersion)),
		DataDir:           ".stargate",
		Controllers:       true,
		LeaderElect:       true,
		LeaderElectionTTL: 15 * time.Second,
		Stdout:            out,
		Stderr:            errOut,
	}
	o.RecommendedOptions.Etcd.StorageConfig.EncodeVersioner = runtime.NewMultiGroupVersioner(
		v1alpha1.SchemeGroupVersion, schema.GroupKind{Group: v1alpha1.GroupName})
	o.RecommendedOptions.SecureServing.BindPort = 8443
	return o
}

// Flags returns the flags, in named sets for --help.
func (o *Options) Flags() cliflag.NamedFlagSets {
	var fss cliflag.NamedFlagSets
	fs := fss.FlagSet("stargate")
	fs.BoolVar(&o.Standalone, "standalone", o.Standalone,
		"Serve without a hosting kube-apiserver: TLS with a self-signed CA in --data-dir, client-certificate "+
			"authentication, only group system:masters authorized. Writes <data-dir>/kubeconfig once serving.")
	fs.StringVar(&o.DataDir, "data-dir", o.DataDir,
		"Directory for the embedded etcd (when --etcd-servers is unset), the standalone PKI and kubeconfig.")
	fs.StringVar(&o.DatacenterCredentialsDir, "datacenter-credentials-dir", o.DatacenterCredentialsDir,
		"Directory holding one bearer-token file per Datacenter, named after it (e.g. a mounted Secret).")
	fs.BoolVar(&o.Controllers, "controllers", o.Controllers,
		"Run the controller loop in this process. false serves the API alone.")
	fs.BoolVar(&o.LeaderElect, "leader-elect", o.LeaderElect,
		"Elect, among the replicas sharing this etcd, the one that runs the controllers (an election on etcd itself).")
	fs.DurationVar(&o.LeaderElectionTTL, "leader-elect-lease-duration", o.LeaderElectionTTL,
		"How long a leader that stops renewing (paused, cut off) keeps the lead before another replica takes over; whole seconds.")
	fs.DurationVar(&o.JobOptions.SubmitWindow, "submit-window", time.Minute,
		"Deadline of each submit to a datacenter (sent as Not-After): a datacenter must not start a job from a request "+
			"received later, so only past it is its 'nothing under this key' final. Longer than a submit's retries.")
	fs.DurationVar(&o.JobOptions.FinishedJobTTL, "finished-job-ttl", 7*24*time.Hour,
		"Delete a finished Job without spec.ttlSecondsAfterFinished this long after it finished (its result stays "+
			"on its Hardware as status.lastJobResult), so finished Jobs do not pile up. 0 keeps them.")
	fs.DurationVar(&o.HardwareRecheck, "hardware-recheck", 5*time.Minute,
		"How often each idle Hardware is looked up again at its datacenter (each datacenter's Hardware is swept once "+
			"per interval, paced). One lookup per Hardware per interval: at a million servers, 5m is 3,300 lookups/s.")
	o.RecommendedOptions.AddFlags(fss.FlagSet("generic"))
	return fss
}

// AddFlags adds every flag to fs.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	for _, f := range o.Flags().FlagSets {
		fs.AddFlagSet(f)
	}
}

// Complete fills in what depends on other flags.
func (o *Options) Complete() error {
	if o.DataDir == "" {
		return errors.New("--data-dir must not be empty")
	}
	abs, err := filepath.Abs(o.DataDir)
	if err != nil {
		return err
	}
	o.DataDir = abs
	if o.Standalone {
		o.completeStandalone()
	}
	if len(o.RecommendedOptions.Etcd.StorageConfig.Transport.ServerList) == 0 {
		o.embeddedEtcd = true
		// A placeholder so the generic validation passes; Run starts the
		// embedded etcd and puts its real address here.
		o.RecommendedOptions.Etcd.StorageConfig.Transport.ServerList = []string{"embedded"}
	}
	return nil
}

// completeStandalone swaps the delegated (kube-apiserver backed) options for
// local ones: there is no core API to delegate to, to admit against or to
// read flow-control settings from.
func (o *Options) completeStandalone() {
	ro := o.RecommendedOptions
	ro.Authentication = nil
	ro.Authorization = nil
	ro.CoreAPI = nil
	ro.Admission = nil
	ro.Features.EnablePriorityAndFairness = false
	pki := o.pki()
	if ro.SecureServing.ServerCert.CertKey.CertFile == "" {
		ro.SecureServing.ServerCert.CertKey.CertFile = pki.ServingCert()
		ro.SecureServing.ServerCert.CertKey.KeyFile = pki.ServingKey()
	}
}

// Validate checks the flags.
func (o *Options) Validate() error {
	errs := o.RecommendedOptions.Validate()
	if o.DatacenterCredentialsDir != "" {
		if st, err := os.Stat(o.DatacenterCredentialsDir); err != nil || !st.IsDir() {
			errs = append(errs, fmt.Errorf("--datacenter-credentials-dir %q is not a readable directory", o.DatacenterCredentialsDir))
		}
	}
	if o.LeaderElect && o.LeaderElectionTTL < 2*time.Second {
		errs = append(errs, fmt.Errorf("--leader-elect-lease-duration %s is below etcd's minimum lease of 2s", o.LeaderElectionTTL))
	}
	return utilerrors.NewAggregate(errs)
}

// Config builds the server configuration. etcd must be reachable at the
// address in the options by the time the server starts.
func (o *Options) Config() (*apiserver.Config, error) {
	bindIP := o.RecommendedOptions.SecureServing.BindAddress
	var extraIPs []net.IP
	if bindIP != nil && !bindIP.IsUnspecified() && !bindIP.IsLoopback() {
		extraIPs = append(extraIPs, bindIP)
	}
	if o.Standalone {
		if err := o.pki().Ensure(nil, extraIPs); err != nil {
			return nil, fmt.Errorf("creating the standalone PKI in %s: %w", o.pki().Dir, err)
		}
	} else if err := o.RecommendedOptions.SecureServing.MaybeDefaultWithSelfSignedCerts("localhost", nil,
		append([]net.IP{netutils.ParseIPSloppy("127.0.0.1")}, extraIPs...)); err != nil {
		return nil, fmt.Errorf("creating self-signed serving certificates: %w", err)
	}

	serverConfig := genericapiserver.NewRecommendedConfig(apiserver.Codecs)
	namer := openapi.NewDefinitionNamer(apiserver.Scheme)
	serverConfig.OpenAPIConfig = genericapiserver.DefaultOpenAPIConfig(stargateopenapi.GetOpenAPIDefinitions, namer)
	serverConfig.OpenAPIConfig.Info.Title = "Stargate"
	serverConfig.OpenAPIConfig.Info.Version = v1alpha1.SchemeGroupVersion.Version
	serverConfig.OpenAPIV3Config = genericapiserver.DefaultOpenAPIV3Config(stargateopenapi.GetOpenAPIDefinitions, namer)
	serverConfig.OpenAPIV3Config.Info.Title = "Stargate"
	serverConfig.OpenAPIV3Config.Info.Version = v1alpha1.SchemeGroupVersion.Version
	serverConfig.EffectiveVersion = compatibility.DefaultBuildEffectiveVersion()

	if err := o.RecommendedOptions.ApplyTo(serverConfig); err != nil {
		return nil, err
	}
	if o.Standalone {
		if err := applyStandaloneAuth(serverConfig, o.pki().CACert()); err != nil {
			return nil, err
		}
	} else {
		serverConfig.Authentication.Authenticator = refuseAnonymous(serverConfig.Authentication.Authenticator)
	}
	// In aggregated mode the hosting cluster's core API (--kubeconfig, or in
	// cluster) takes the controllers' Events; RecommendedConfig.Complete drops
	// it, so it is carried in ExtraConfig.
	return &apiserver.Config{GenericConfig: serverConfig, ExtraConfig: apiserver.ExtraConfig{Config: manager.Config{CoreClientConfig: serverConfig.ClientConfig}}}, nil
}

func (o *Options) pki() standalonePKI {
	return standalonePKI{Dir: filepath.Join(o.DataDir, "pki")}
}

// Run starts etcd if embedded, serves until ctx is done, then stops etcd.
func (o *Options) Run(ctx context.Context) error {
	server, stop, err := o.NewServer()
	if err != nil {
		return err
	}
	defer stop()
	return server.GenericAPIServer.PrepareRun().RunWithContext(ctx)
}

// NewServer builds a ready-to-run server, starting the embedded etcd if there
// is one. stop releases what NewServer started; call it after the server ends.
func (o *Options) NewServer() (server *apiserver.StargateServer, stop func(), err error) {
	stop = func() {}
	if o.embeddedEtcd {
		etcd, err := embeddedetcd.Start(filepath.Join(o.DataDir, "etcd"), 2*time.Minute)
		if err != nil {
			return nil, stop, err
		}
		stop = etcd.Close
		o.RecommendedOptions.Etcd.StorageConfig.Transport.ServerList = []string{etcd.ClientURL}
		klog.InfoS("Embedded etcd is serving", "dataDir", filepath.Join(o.DataDir, "etcd"), "url", etcd.ClientURL)
	}
	defer func() {
		if err != nil {
			stop()
		}
	}()
	config, err := o.Config()
	if err != nil {
		return nil, stop, err
	}
	etcdClient, err := newEtcdClient(o.RecommendedOptions.Etcd.StorageConfig.Transport)
	if err != nil {
		return nil, stop, err
	}
	stopEtcd := stop
	stop = func() {
		etcdClient.Close()
		stopEtcd()
	}
	config.ExtraConfig = apiserver.ExtraConfig{Controllers: o.Controllers, Config: manager.Config{
		EtcdClient: etcdClient, EtcdPrefix: o.RecommendedOptions.Etcd.StorageConfig.Prefix,
		DatacenterCredentialsDir: o.DatacenterCredentialsDir, JobOptions: o.JobOptions,
		ProbeInterval: o.ProbeInterval, HardwareRecheck: o.HardwareRecheck,
		LeaderElect: o.LeaderElect, LeaderElectionTTL: o.LeaderElectionTTL,
		CoreClientConfig: config.ExtraConfig.CoreClientConfig}}
	server, err = config.Complete().New()
	if err != nil {
		return nil, stop, err
	}
	if o.Standalone {
		server.GenericAPIServer.AddPostStartHookOrDie("stargate-write-kubeconfig",
			func(hookCtx genericapiserver.PostStartHookContext) error {
				return o.writeKubeconfig(server.GenericAPIServer)
			})
	}
	return server, stop, nil
}
