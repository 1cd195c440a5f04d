//! A handler's response as API Gateway's HTTP API (payload format 2.0) takes it,
//! field for field what lambda_http sent.

use lambda_http::aws_lambda_events::apigw::ApiGatewayV2httpResponse;
use lambda_http::http::header::SET_COOKIE;
use lambda_http::http::HeaderMap;
use lambda_http::{Body, Response};

pub fn into_api_gateway(response: Response<Body>) -> ApiGatewayV2httpResponse {
    let (parts, body) = response.into_parts();
    let mut headers = parts.headers;
    // The HTTP API wants cookies apart from the headers.
    let cookies = headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_string))
        .collect();
    headers.remove(SET_COOKIE);
    let mut out = ApiGatewayV2httpResponse::default();
    out.status_code = i64::from(parts.status.as_u16());
    out.is_base64_encoded = matches!(body, Body::Binary(_));
    out.body = match body {
        Body::Empty => None,
        other => Some(other),
    };
    out.headers = headers;
    out.multi_value_headers = HeaderMap::new();
    out.cookies = cookies;
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use lambda_http::http::StatusCode;

    #[test]
    fn status_headers_cookies_and_body_as_the_http_api_expects_them() {
        let response = Response::builder()
            .status(StatusCode::ACCEPTED)
            .header("content-type", "application/json")
            .header("set-cookie", "a=1")
            .body(Body::Text("{}".into()))
            .unwrap();
        let json = serde_json::to_value(into_api_gateway(response)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "statusCode": 202,
                "headers": {"content-type": "application/json"},
                "multiValueHeaders": {},
                "body": "{}",
                "isBase64Encoded": false,
                "cookies": ["a=1"],
            })
        );
        let binary = Response::new(Body::Binary(b"hi".to_vec()));
        let json = serde_json::to_value(into_api_gateway(binary)).unwrap();
        assert_eq!(
            (&json["body"], &json["isBase64Encoded"]),
            (&"aGk=".into(), &true.into())
        );
        let empty = serde_json::to_value(into_api_gateway(Response::new(Body::Empty))).unwrap();
        assert!(empty.get("body").is_none(), "{empty}");
    }
}
