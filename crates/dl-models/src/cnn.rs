//! The chapter's `ConvolutionalNeuralNetwork` (1x28x28) and its image-classification case
//! (3x64x64).

use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};
use dl_core::{Classifier, Error, Result, validate};
use dl_layers::{
    KeyLayout, PytorchModel, conv2d_forward, dropout_forward, linear_forward, relu_max_pool2d,
};

use crate::mlp::ParamCount;

/// Configuration of [`Cnn`]; the defaults are the chapter's `ConvolutionalNeuralNetwork`
/// for 1x28x28 digits. [`CnnConfig::image_cnn`] gives the image-classification case.
///
/// ```
/// let config = dl_models::CnnConfig::new();
/// assert_eq!(config.flattened_features(), 128 * 3 * 3);
/// assert_eq!(dl_models::CnnConfig::image_cnn().flattened_features(), 128 * 8 * 8);
/// ```
#[derive(Config, Debug, PartialEq)]
pub struct CnnConfig {
    /// Input channels (1 for grey digits, 3 for colour images).
    #[config(default = 1)]
    pub in_channels: usize,
    /// Height and width of the (square) input.
    #[config(default = 28)]
    pub image_size: usize,
    /// Output channels of the three 3x3 convolutions.
    #[config(default = "[32, 64, 128]")]
    pub conv_channels: [usize; 3],
    /// Width of the hidden fully connected layer.
    #[config(default = 512)]
    pub hidden_size: usize,
    /// Number of classes.
    #[config(default = 10)]
    pub num_classes: usize,
    /// Dropout before the classifier (active only on an autodiff device).
    #[config(default = 0.5)]
    pub dropout: f64,
}

impl CnnConfig {
    /// The chapter's image-classification case: 3x64x64 input, 8192-512-10 head.
    pub fn image_cnn() -> Self {
        Self::new().with_in_channels(3).with_image_size(64)
    }

    /// Spatial size after the three 2x2 max-pools (each floors, as PyTorch's does).
    pub fn pooled_size(&self) -> usize {
        self.image_size / 2 / 2 / 2
    }

    /// Features entering `fc1`: last conv channels x pooled height x pooled width.
    pub fn flattened_features(&self) -> usize {
        self.conv_channels[2] * self.pooled_size() * self.pooled_size()
    }

    /// Number of parameters [`CnnConfig::init`] would allocate, computed without allocating;
    /// an error when it overflows `usize`.
    ///
    /// ```
    /// assert_eq!(dl_models::CnnConfig::new().num_params()?, 688_138);
    /// # Ok::<(), dl_core::Error>(())
    /// ```
    pub fn num_params(&self) -> Result<usize> {
        let [c1, c2, c3] = self.conv_channels;
        let mut total = ParamCount::new("CNN");
        for (c_in, c_out) in [(self.in_channels, c1), (c1, c2), (c2, c3)] {
            total.add(&[c_out, c_in, 3, 3]);
            total.add(&[c_out]);
        }
        let pooled = self.pooled_size();
        total.add(&[c3, pooled, pooled, self.hidden_size]);
        total.add(&[self.hidden_size]);
        total.linear(self.hidden_size, self.num_classes);
        total.finish()
    }

    /// Build the network with PyTorch's default initialisation.
    pub fn init(&self, device: &Device) -> Result<Cnn> {
        validate::probability("CNN dropout", self.dropout)?;
        validate::positive("CNN in_channels", self.in_channels)?;
        validate::positive("CNN hidden_size", self.hidden_size)?;
        validate::positive("CNN num_classes", self.num_classes)?;
        for &c in &self.conv_channels {
            validate::positive("CNN conv channels", c)?;
        }
        if self.pooled_size() == 0 {
            return Err(Error::invalid(
                "CNN image_size",
                "at least 8 (three 2x2 max-pools)",
                self.image_size,
            ));
        }
        let conv = |c_in: usize, c_out: usize| {
            Conv2dConfig::new([c_in, c_out], [3, 3])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(device)
        };
        let [c1, c2, c3] = self.conv_channels;
        Ok(Cnn {
            conv1: conv(self.in_channels, c1),
            conv2: conv(c1, c2),
            conv3: conv(c2, c3),
            pool: MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init(),
            fc1: LinearConfig::new(self.flattened_features(), self.hidden_size).init(device),
            fc2: LinearConfig::new(self.hidden_size, self.num_classes).init(device),
            dropout: DropoutConfig::new(self.dropout).init(),
        })
    }
}

/// Three `conv 3x3 (padding 1) -> ReLU -> max-pool 2x2` stages, then
/// `fc1 -> ReLU -> dropout -> fc2`.
///
/// Field names are the chapter's, so its PyTorch keys map one to one: `conv1.weight`
/// `[32, 1, 3, 3]`, `conv1.bias`, `conv2.*`, `conv3.*`, `fc1.weight` `[512, 1152]`, `fc1.bias`,
/// `fc2.weight` `[10, 512]`, `fc2.bias`. Convolution weights have PyTorch's layout; linear
/// weights are stored transposed (`[in, out]`), which dl-io's loader handles. The chapter's
/// image case is an `nn.Sequential` whose keys are `0.*`, `3.*`, `6.*` (convolutions), `10.*`
/// and `13.*` (linear layers).
///
/// ```
/// use burn::tensor::Tensor;
/// let device = dl_core::BackendKind::Flex.device().unwrap();
/// let cnn = dl_models::CnnConfig::new().init(&device).unwrap();
/// assert_eq!(cnn.forward(Tensor::zeros([2, 1, 28, 28], &device)).dims(), [2, 10]);
/// ```
#[derive(Module, Debug)]
pub struct Cnn {
    /// First convolution.
    pub conv1: Conv2d,
    /// Second convolution.
    pub conv2: Conv2d,
    /// Third convolution.
    pub conv3: Conv2d,
    /// The 2x2 max-pool shared by the three stages.
    pub pool: MaxPool2d,
    /// Hidden fully connected layer.
    pub fc1: Linear,
    /// Classifier.
    pub fc2: Linear,
    /// Dropout between `fc1` and `fc2`.
    pub dropout: Dropout,
}

/// The image-classification case of the chapter is the same network on 3x64x64 input.
pub type ImageCnn = Cnn;

impl Cnn {
    /// Logits `[batch, num_classes]` for images `[batch, channels, height, width]`.
    ///
    /// Panics with a message naming the expected shape when the input does not fit; use
    /// [`Cnn::try_forward`] on user data.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        match self.try_forward(images) {
            Ok(logits) => logits,
            Err(e) => panic!("{e}"),
        }
    }

    /// [`Cnn::forward`] that returns an error when the channels are not `conv1`'s input
    /// channels or the image size does not give the `fc1` input features after the three
    /// 2x2 max-pools.
    pub fn try_forward(&self, images: Tensor<4>) -> Result<Tensor<2>> {
        let dims = images.dims();
        let [batch, channels, height, width] = dims;
        let expected_channels = self.conv1.weight.dims()[1];
        let last_channels = self.conv3.weight.dims()[0];
        let features = self.fc1.weight.dims()[0];
        let flattened = last_channels
            .checked_mul(height / 8)
            .and_then(|x| x.checked_mul(width / 8));
        if channels != expected_channels || flattened != Some(features) {
            return Err(Error::invalid(
                "CNN input shape",
                format!(
                    "[{batch}, {expected_channels}, H, W] with {last_channels} x (H/8) x (W/8) = {features} (fc1's input features)"
                ),
                format!("{dims:?}"),
            ));
        }
        Ok(self.run(images))
    }

    fn run(&self, images: Tensor<4>) -> Tensor<2> {
        // `conv2d_forward`: Burn's `Conv2d`, with dl-kernels' weight gradient on Flex;
        // `relu_max_pool2d`: `pool(relu(x))`, one pass on Flex.
        let x = relu_max_pool2d(&self.pool, conv2d_forward(&self.conv1, images));
        let x = relu_max_pool2d(&self.pool, conv2d_forward(&self.conv2, x));
        let x = relu_max_pool2d(&self.pool, conv2d_forward(&self.conv3, x));
        let x: Tensor<2> = x.flatten(1, 3);
        let x = dropout_forward(&self.dropout, relu(linear_forward(&self.fc1, x)));
        linear_forward(&self.fc2, x)
    }
}

impl Classifier for Cnn {
    type Input = Tensor<4>;

    fn logits(&self, input: Tensor<4>) -> Tensor<2> {
        self.forward(input)
    }

    fn num_classes(&self) -> usize {
        self.fc2.weight.dims()[1]
    }
}

impl PytorchModel for Cnn {
    /// The chapter's `ConvolutionalNeuralNetwork` field names first, then the
    /// image-classification case's `nn.Sequential` indices.
    fn key_layouts() -> &'static [KeyLayout] {
        &[
            KeyLayout::IDENTITY,
            KeyLayout {
                name: "nn.Sequential",
                map: cnn_sequential,
            },
        ]
    }
}

/// The image-classification case's `nn.Sequential` indices.
fn cnn_sequential(path: &str) -> String {
    KeyLayout::rename_head(path, |head| {
        let index = match head {
            "conv1" => 0,
            "conv2" => 3,
            "conv3" => 6,
            "fc1" => 10,
            "fc2" => 13,
            _ => return None,
        };
        Some(index.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use dl_core::BackendKind;

    #[test]
    fn sequential_names_are_the_image_case_indices() {
        assert_eq!(cnn_sequential("fc1.weight"), "10.weight");
        assert_eq!(cnn_sequential("conv3.bias"), "6.bias");
        assert_eq!(cnn_sequential("pool"), "pool");
    }

    #[test]
    fn parameter_counts_match_pytorch() {
        let device = BackendKind::Flex.device().expect("flex");
        // torch: ConvolutionalNeuralNetwork() has 688_138 parameters:
        // 320 + 18_496 + 73_856 (convs) + 590_336 (fc1) + 5_130 (fc2).
        let cnn = CnnConfig::new().init(&device).expect("valid");
        assert_eq!(cnn.parameter_count(), 688_138);
        // The image case: 896 + 18_496 + 73_856 + 4_194_816 + 5_130.
        let image = CnnConfig::image_cnn().init(&device).expect("valid");
        assert_eq!(image.parameter_count(), 4_293_194);
    }

    #[test]
    fn num_params_counts_without_allocating() {
        let device = BackendKind::Flex.device().expect("flex");
        let config = CnnConfig::new()
            .with_in_channels(2)
            .with_image_size(16)
            .with_conv_channels([3, 4, 5])
            .with_hidden_size(6)
            .with_num_classes(7);
        let built = config.init(&device).expect("valid").num_params();
        // 2*3*9+3 + 3*4*9+4 + 4*5*9+5 + (5*2*2)*6+6 + 6*7+7 = 57+112+185+126+49
        assert_eq!(built, 529);
        assert_eq!(config.num_params().expect("fits"), built);
        let huge = CnnConfig::new().with_conv_channels([1, 1, usize::MAX]);
        assert!(huge.num_params().is_err());
    }

    #[test]
    fn try_forward_names_the_expected_shape() {
        let device = BackendKind::Flex.device().expect("flex");
        let cnn = CnnConfig::new()
            .with_conv_channels([2, 2, 2])
            .with_hidden_size(4)
            .init(&device)
            .expect("valid");
        let err = cnn
            .try_forward(Tensor::zeros([1, 3, 28, 28], &device))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid CNN input shape: expected [1, 1, H, W] with 2 x (H/8) x (W/8) = 18 (fc1's input features), got [1, 3, 28, 28]"
        );
        let err = cnn
            .try_forward(Tensor::zeros([1, 1, 64, 64], &device))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid CNN input shape: expected [1, 1, H, W] with 2 x (H/8) x (W/8) = 18 (fc1's input features), got [1, 1, 64, 64]"
        );
        let logits = cnn.try_forward(Tensor::zeros([2, 1, 28, 28], &device));
        assert_eq!(logits.expect("fits").dims(), [2, 10]);
    }

    #[test]
    fn too_small_images_are_rejected() {
        let device = BackendKind::Flex.device().expect("flex");
        let err = CnnConfig::new()
            .with_image_size(7)
            .init(&device)
            .unwrap_err();
        assert!(err.to_string().contains("image_size"), "{err}");
    }
}
