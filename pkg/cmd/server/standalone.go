package server

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strconv"

	"k8s.io/apiserver/pkg/authentication/request/x509"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/apiserver/pkg/server/dynamiccertificates"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/klog/v2"
)

// applyStandaloneAuth authenticates clients by certificates signed by the
// standalone CA and authorizes group system:masters only. Requests without a
// valid certificate get 401: there is no anonymous user.
func applyStandaloneAuth(config *genericapiserver.RecommendedConfig, caFile string) error {
	ca, err := dynamiccertificates.NewDynamicCAContentFromFile("standalone-client-ca", caFile)
	if err != nil {
		return fmt.Errorf("loading the standalone client CA: %w", err)
	}
	if err := config.Authentication.ApplyClientCert(ca, config.SecureServing); err != nil {
		return err
	}
	config.Authentication.Authenticator = x509.NewDynamic(ca.VerifyOptions, x509.CommonNameUserConversion)
	config.Authorization.Authorizer = authorizer.AuthorizerFunc(mastersOnly)
	return nil
}

// mastersOnly allows everything to group system:masters and nothing to
// anyone else, which is all a single-user standalone server needs.
func mastersOnly(ctx context.Context, a authorizer.Attributes) (authorizer.Decision, string, error) {
	if a.GetUser() != nil && slices.Contains(a.GetUser().GetGroups(), MastersGroup) {
		return authorizer.DecisionAllow, "", nil
	}
	return authorizer.DecisionDeny, "a standalone Stargate authorizes group " + MastersGroup + " only", nil
}

// KubeconfigPath is where a standalone server writes its admin kubeconfig.
func KubeconfigPath(dataDir string) string { return filepath.Join(dataDir, "kubeconfig") }

// writeKubeconfig writes <data-dir>/kubeconfig for the admin certificate,
// pointing at the address the server actually listens on.
func (o *Options) writeKubeconfig(s *genericapiserver.GenericAPIServer) error {
	host, port, err := s.SecureServingInfo.HostPort()
	if err != nil {
		return err
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	pki := o.pki()
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["stargate"] = &clientcmdapi.Cluster{
		Server:               "https://" + net.JoinHostPort(host, strconv.Itoa(port)),
		CertificateAuthority: pki.CACert(),
	}
	cfg.AuthInfos[AdminUser] = &clientcmdapi.AuthInfo{ClientCertificate: pki.AdminCert(), ClientKey: pki.AdminKey()}
	cfg.Contexts["stargate"] = &clientcmdapi.Context{Cluster: "stargate", AuthInfo: AdminUser}
	cfg.CurrentContext = "stargate"
	path := KubeconfigPath(o.DataDir)
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	klog.InfoS("Wrote admin kubeconfig", "path", path, "server", cfg.Clusters["stargate"].Server)
	return nil
}
