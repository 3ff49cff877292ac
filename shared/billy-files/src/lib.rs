//! Billy's `FileStore` over S3 (LocalStack's S3 locally), in its own crate so only the functions
//! that write or link files carry the S3 client. A file is written as a multipart upload: parts of
//! 5 MiB go out as they fill, so memory holds one part, whatever the file's size.

use async_trait::async_trait;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use billy_core::ports::{FileStore, FileWriter};
use billy_core::{DomainError, DomainResult};
use std::time::Duration;

/// S3's smallest part (all but the last).
pub const PART_BYTES: usize = 5 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct S3Files {
    client: aws_sdk_s3::Client,
    bucket: String,
}

fn s3_error(e: impl std::fmt::Debug) -> DomainError {
    DomainError::unexpected(format!("S3: {e:?}"))
}

impl S3Files {
    pub fn new(client: aws_sdk_s3::Client, bucket: impl Into<String>) -> Self {
        Self { client, bucket: bucket.into() }
    }

    /// Files on the local stack (LocalStack's S3 at `endpoint`), with its fixed test credentials.
    pub fn local(endpoint: &str, bucket: impl Into<String>) -> Self {
        Self::new(local_client(endpoint), bucket)
    }

    /// A client from the environment (`AWS_ENDPOINT_URL` points it at LocalStack, which serves
    /// buckets by path rather than by host name).
    pub async fn from_env(bucket: impl Into<String>) -> Self {
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .http_client(billy_aws::clients::https_client())
            .load()
            .await;
        let local = std::env::var("AWS_ENDPOINT_URL").is_ok_and(|u| u.contains("127.0.0.1") || u.contains("localhost"));
        let s3 = aws_sdk_s3::config::Builder::from(&config).force_path_style(local).build();
        Self::new(aws_sdk_s3::Client::from_conf(s3), bucket)
    }
}

#[derive(Debug)]
struct Upload {
    client: aws_sdk_s3::Client,
    bucket: String,
    key: String,
    upload_id: String,
    buffer: Vec<u8>,
    parts: Vec<CompletedPart>,
    bytes: u64,
}

impl Upload {
    async fn send_part(&mut self) -> DomainResult<()> {
        let number = i32::try_from(self.parts.len() + 1).map_err(s3_error)?;
        let body = std::mem::take(&mut self.buffer);
        self.bytes += body.len() as u64;
        let out = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(&self.upload_id)
            .part_number(number)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(s3_error)?;
        self.parts.push(CompletedPart::builder().part_number(number).set_e_tag(out.e_tag).build());
        Ok(())
    }
}

#[async_trait]
impl FileWriter for Upload {
    async fn write(&mut self, bytes: &[u8]) -> DomainResult<()> {
        self.buffer.extend_from_slice(bytes);
        if self.buffer.len() >= PART_BYTES {
            self.send_part().await?;
        }
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> DomainResult<u64> {
        if !self.buffer.is_empty() || self.parts.is_empty() {
            self.send_part().await?;
        }
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(&self.upload_id)
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(self.parts.clone())).build())
            .send()
            .await
            .map_err(s3_error)?;
        Ok(self.bytes)
    }

    async fn abort(self: Box<Self>) {
        let aborted = self
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(&self.upload_id)
            .send()
            .await;
        if let Err(e) = aborted {
            tracing::warn!(key = %self.key, error = ?e, "multipart upload not aborted; the bucket's lifecycle rule clears it");
        }
    }
}

#[async_trait]
impl FileStore for S3Files {
    async fn create(&self, key: &str, content_type: &str) -> DomainResult<Box<dyn FileWriter>> {
        let out = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .send()
            .await
            .map_err(s3_error)?;
        let upload_id = out.upload_id.ok_or_else(|| DomainError::unexpected("S3 gave no upload id"))?;
        Ok(Box::new(Upload {
            client: self.client.clone(),
            bucket: self.bucket.clone(),
            key: key.to_owned(),
            upload_id,
            buffer: Vec::with_capacity(PART_BYTES),
            parts: Vec::new(),
            bytes: 0,
        }))
    }

    async fn link(&self, key: &str, valid_for: Duration) -> DomainResult<String> {
        let config = aws_sdk_s3::presigning::PresigningConfig::expires_in(valid_for).map_err(s3_error)?;
        let request =
            self.client.get_object().bucket(&self.bucket).key(key).presigned(config).await.map_err(s3_error)?;
        Ok(request.uri().to_owned())
    }
}

/// An S3 client for the local stack only (LocalStack at `endpoint`, path-style buckets).
pub fn local_client(endpoint: &str) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::config::Builder::new()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .http_client(billy_aws::clients::https_client())
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_s3::config::Credentials::new("test", "test", None, None, "billy-local"))
        .endpoint_url(endpoint)
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(config)
}
