//! Secrets sealed with AWS KMS (LocalStack's KMS locally): `Encrypt`/`Decrypt` under the
//! deployment's key with an encryption context, so a ciphertext opens only for the tenant and
//! gateway it was sealed for (and IAM can require that context too). Browser sessions are signed
//! with `GenerateMac`/`VerifyMac` under the deployment's HMAC key, which never leaves KMS.

use crate::dynamo::sdk_error;
use async_trait::async_trait;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::MacAlgorithmSpec;
use billy_core::DomainResult;
use billy_core::ports::{SecretBox, SessionSigner};
use std::collections::BTreeMap;

#[derive(Debug, Clone)]
pub struct KmsSecretBox {
    client: aws_sdk_kms::Client,
    key: String,
}

impl KmsSecretBox {
    pub fn new(client: aws_sdk_kms::Client, key: impl Into<String>) -> Self {
        Self { client, key: key.into() }
    }
}

#[async_trait]
impl SecretBox for KmsSecretBox {
    async fn seal(&self, plaintext: &[u8], context: &BTreeMap<String, String>) -> DomainResult<Vec<u8>> {
        let out = self
            .client
            .encrypt()
            .key_id(&self.key)
            .plaintext(Blob::new(plaintext))
            .set_encryption_context(Some(context.clone().into_iter().collect()))
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(out.ciphertext_blob.map(Blob::into_inner).unwrap_or_default())
    }

    async fn open(&self, sealed: &[u8], context: &BTreeMap<String, String>) -> DomainResult<Vec<u8>> {
        let out = self
            .client
            .decrypt()
            .key_id(&self.key)
            .ciphertext_blob(Blob::new(sealed))
            .set_encryption_context(Some(context.clone().into_iter().collect()))
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(out.plaintext.map(Blob::into_inner).unwrap_or_default())
    }
}

/// HMAC-SHA-256 under a KMS HMAC key (`KeySpec: HMAC_256`).
#[derive(Debug, Clone)]
pub struct KmsSessionSigner {
    client: aws_sdk_kms::Client,
    key: String,
}

impl KmsSessionSigner {
    pub fn new(client: aws_sdk_kms::Client, key: impl Into<String>) -> Self {
        Self { client, key: key.into() }
    }
}

#[async_trait]
impl SessionSigner for KmsSessionSigner {
    async fn sign(&self, message: &[u8]) -> DomainResult<Vec<u8>> {
        let out = self
            .client
            .generate_mac()
            .key_id(&self.key)
            .mac_algorithm(MacAlgorithmSpec::HmacSha256)
            .message(Blob::new(message))
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(out.mac.map(Blob::into_inner).unwrap_or_default())
    }

    async fn verify(&self, message: &[u8], mac: &[u8]) -> DomainResult<bool> {
        if mac.is_empty() {
            return Ok(false);
        }
        let out = self
            .client
            .verify_mac()
            .key_id(&self.key)
            .mac_algorithm(MacAlgorithmSpec::HmacSha256)
            .message(Blob::new(message))
            .mac(Blob::new(mac))
            .send()
            .await;
        match out {
            Ok(out) => Ok(out.mac_valid),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_kms_invalid_mac_exception()) => Ok(false),
            Err(e) => Err(sdk_error(e)),
        }
    }
}
